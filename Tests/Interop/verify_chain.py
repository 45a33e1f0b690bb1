"""Third-party check of a gunn event log, written only from docs/hash-chain.md: Python's sqlite3
and hashlib, and PyPI's rfc8785 (an independent RFC 8785 implementation).
Usage: verify_chain.py PATH/TO/events.sqlite   -> prints "ok N" (or "ok N from snapshot S" for a
compacted log) and exits 0, or names the first problem.
"""
import hashlib
import json
import sqlite3
import sys

import rfc8785


def main(path):
    db = sqlite3.connect(path)
    prev = ""
    expected = None
    base = None
    row = db.execute("SELECT min(global_seq) FROM entries").fetchone()
    first = row[0] if row and row[0] is not None else None
    if first is not None and first > 1:
        # Compacted: the chain continues from the snapshot the log was compacted to.
        snap = db.execute("SELECT state, digest, chain_checksum FROM snapshots WHERE global_seq = ?", (first - 1,)).fetchone()
        if snap is None:
            print("the log starts at %d and no snapshot at %d holds its chain checksum" % (first, first - 1)); return 1
        state, digest, chain = bytes(snap[0]), snap[1], snap[2]
        if hashlib.sha256(state).hexdigest() != digest:
            print("snapshot %d does not match its digest" % (first - 1)); return 1
        if rfc8785.dumps(json.loads(state.decode("utf-8"))) != state:
            print("snapshot %d is not canonical JSON per rfc8785" % (first - 1)); return 1
        if json.loads(state.decode("utf-8")).get("last_global_seq") != first - 1:
            print("snapshot %d holds another seq" % (first - 1)); return 1
        prev = chain
        expected = first
        base = first - 1
    n = 0
    for seq, effect, checksum in db.execute("SELECT global_seq, effect, checksum FROM entries ORDER BY global_seq"):
        if expected is not None and seq != expected:
            print("gap: expected %d, found %d" % (expected, seq)); return 1
        effect = bytes(effect)
        canonical = rfc8785.dumps(json.loads(effect.decode("utf-8")))
        if canonical != effect:
            print("entry %d is not canonical JSON per rfc8785: %r" % (seq, effect)); return 1
        digest = hashlib.sha256(prev.encode("ascii") + effect).hexdigest()
        if digest != checksum:
            print("checksum mismatch at %d: recomputed %s, stored %s" % (seq, digest, checksum)); return 1
        prev = digest
        expected = seq + 1
        n += 1
    print("ok %d" % n + ("" if base is None else " from snapshot %d" % base))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
