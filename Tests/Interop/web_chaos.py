#!/usr/bin/env python3
"""Clients of the web adapter for the kill -9 test: STREAMS WebSocket clients (each watching one
of the AGENTS) and one submitter per agent, against the address in HOME/run/web.addr, read again at
every reconnect. Prints "running" once every stream is open and some intents are committed (the
test then kills the adapter), and at the end one JSON line:
  acked: the Idempotency-Keys answered 200, per agent; reconnects; resumed ("delta"/"view" counts);
  diverged: streams whose rebuilt view differs from GET view; digest_failures.
"""
import asyncio, hashlib, json, sys, time, urllib.error, urllib.request

import jsonpatch, rfc8785, websockets

home, token, agents, streams, intents = sys.argv[1], sys.argv[2], sys.argv[3].split(","), int(sys.argv[4]), int(sys.argv[5])
H = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}


def base():
    with open(home + "/run/web.addr") as f:
        return f.read().strip()


def call(method, path, body=None, headers=None):
    req = urllib.request.Request(base() + path, data=None if body is None else json.dumps(body).encode(), method=method,
                                 headers={**H, **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.loads(e.read())
        except Exception:
            return e.code, None
    except Exception as e:
        return 0, str(e)


def digest(doc):
    return hashlib.sha256(rfc8785.dumps(doc)).hexdigest()


stats = {"reconnects": 0, "delta": 0, "view": 0, "digest_failures": 0}
# Set whenever a stream opens, applies a message or a submitter is acknowledged: the waits below
# wait for those events (under deadlines), not for time.
changed = None


def notify():
    changed.set()


async def wait_until(predicate, seconds):
    deadline = time.monotonic() + seconds
    while not predicate():
        left = deadline - time.monotonic()
        if left <= 0:
            return
        changed.clear()
        try:
            await asyncio.wait_for(changed.wait(), timeout=left)
        except asyncio.TimeoutError:
            return


class Stream:
    def __init__(self, agent):
        self.agent, self.doc, self.seq, self.gseq, self.open = agent, None, 0, 0, False

    def apply(self, m):
        if m.get("type") == "subscribed":
            stats[m["start"]] += 1
            return
        if m.get("type") == "view":
            doc = m["view"]
        elif m.get("type") == "observation":
            if m["view_seq"] <= self.seq or self.doc is None:
                return
            try:
                doc = jsonpatch.apply_patch(self.doc, m["patches"])
            except Exception:
                stats["digest_failures"] += 1
                return
        else:
            return
        if digest(doc) != m["context_digest"]:
            stats["digest_failures"] += 1
            return
        self.doc, self.seq, self.gseq = doc, m["view_seq"], max(self.gseq, m["global_seq"])
        notify()

    async def run(self, stop):
        first = True
        while not stop.is_set():
            q = f"/v1/stream?agents={self.agent}"
            if self.doc is not None:
                q += f"&resume={self.agent}:{self.seq}:{digest(self.doc)}"
            try:
                async with websockets.connect(base().replace("http", "ws", 1) + q, additional_headers={"Authorization": H["Authorization"]},
                                              open_timeout=5) as ws:
                    if not first:
                        stats["reconnects"] += 1
                    first = False
                    self.open = True
                    notify()
                    while not stop.is_set():
                        try:
                            m = json.loads(await asyncio.wait_for(ws.recv(), timeout=0.5))
                        except asyncio.TimeoutError:
                            continue
                        self.apply(m)
            except Exception:
                self.open = False
                # A client's reconnect backoff (the adapter is down), not a wait for an event.
                await asyncio.sleep(0.1)


async def submitter(agent, acked, progress, refused):
    for k in range(intents):
        attempt = 0
        key = f"{agent}-{k}-{attempt}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status, body = await asyncio.to_thread(call, "POST", f"/v1/agents/{agent}/intents",
                                                   {"kind": "Move", "payload": {"to": [k % 7, k % 5]}}, {"Idempotency-Key": key})
            if status == 200:
                acked[agent].append(key)
                progress[0] += 1
                notify()
                break
            if status == 409 and isinstance(body, dict) and body.get("name") == "STALE_CONTEXT":
                # Refused (not committed): decide again, under a new key.
                refused.append(key)
                attempt += 1
                key = f"{agent}-{k}-{attempt}"
            # Anything else (the adapter is down, 503 …): the same key again, after a client's short backoff.
            await asyncio.sleep(0.05)


async def main():
    global changed
    changed = asyncio.Event()
    for i, a in enumerate(agents):
        status, body = call("POST", "/v1/agents", {"agent_id": a, "spawn": [i * 3, 0]})
        assert status == 201, (status, body)
    stop = asyncio.Event()
    ss = [Stream(agents[i % len(agents)]) for i in range(streams)]
    tasks = [asyncio.create_task(s.run(stop)) for s in ss]
    acked = {a: [] for a in agents}
    progress = [0]
    refused = []
    subs = [asyncio.create_task(submitter(a, acked, progress, refused)) for a in agents]
    await wait_until(lambda: all(s.open for s in ss) and progress[0] >= 10, 60)
    print("running", flush=True)
    await asyncio.gather(*subs)
    # Every stream catches up with its agent's last commit, then its view is compared with GET view.
    diverged = []
    deadline = time.monotonic() + 30
    views = {}
    for a in agents:
        status, body = await asyncio.to_thread(call, "GET", f"/v1/agents/{a}/view")
        views[a] = body
    await wait_until(lambda: all(s.seq >= views[s.agent]["view_seq"] for s in ss), max(0, deadline - time.monotonic()))
    for i, s in enumerate(ss):
        v = views[s.agent]
        if s.doc is None or rfc8785.dumps(s.doc) != rfc8785.dumps(v["view"]) or s.seq != v["view_seq"]:
            diverged.append({"stream": i, "agent": s.agent, "seq": s.seq, "want": v["view_seq"]})
    stop.set()
    await asyncio.gather(*tasks)
    print(json.dumps({"acked": acked, "diverged": diverged, "refused": refused, **stats}, sort_keys=True), flush=True)


asyncio.run(main())
