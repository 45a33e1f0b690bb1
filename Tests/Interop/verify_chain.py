"""Third-party check of a gunn event log, written only from docs/hash-chain.md: Python's sqlite3
and hashlib, and PyPI's rfc8785 (an independent RFC 8785 implementation).
Usage: verify_chain.py PATH/TO/events.sqlite   -> prints "ok N" and exits 0, or names the first problem.
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
    print("ok %d" % n)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
