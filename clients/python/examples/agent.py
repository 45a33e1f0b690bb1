#!/usr/bin/env python3
"""A gunn agent in Python with the standard library plus PyPI `websockets` and `jsonpatch`
(and `rfc8785` to check each view's digest independently).

It registers its agents with the web adapter, streams their observations over one WebSocket,
rebuilds each view by applying every delta with jsonpatch, checks every digest
(SHA-256 of the view's RFC 8785 canonical JSON), moves each agent a few times through the REST
API — each intent decided on the view it holds (context_seq), and decided again when refused as
stale — and at the end compares its rebuilt views with GET .../view byte for byte.

    python agent.py --url http://127.0.0.1:8787 --token TOKEN --agents ann,bob --moves 5

Prints one JSON summary line; exits 1 if a digest or the final comparison fails.
"""
import argparse, asyncio, hashlib, json, sys, urllib.error, urllib.request

import jsonpatch
import rfc8785
import websockets


def call(url, token, method, path, body=None, headers=None):
    """One REST call; returns (status, decoded JSON body)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url + path, data=data, method=method,
                                 headers={"Authorization": "Bearer " + token, "Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def digest(doc):
    return hashlib.sha256(rfc8785.dumps(doc)).hexdigest()


class Views:
    """The views this client holds, each rebuilt from the stream and checked against its digest."""

    def __init__(self):
        self.docs, self.seqs, self.checked, self.failures = {}, {}, 0, []

    def apply(self, m):
        if m["type"] not in ("view", "observation"):
            return
        agent = m["agent_id"]
        if m["type"] == "view":
            doc = m["view"]
        elif m["type"] == "observation":
            if m["view_seq"] <= self.seqs.get(agent, 0):
                return
            doc = jsonpatch.apply_patch(self.docs[agent], m["patches"])
        else:
            return
        if digest(doc) != m["context_digest"]:
            self.failures.append(f"{agent} at view_seq {m['view_seq']}: digest mismatch")
        self.docs[agent], self.seqs[agent] = doc, m["view_seq"]
        self.checked += 1


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--agents", default="ann")
    ap.add_argument("--moves", type=int, default=5)
    a = ap.parse_args()
    agents = a.agents.split(",")
    views = Views()

    for i, agent in enumerate(agents):
        status, body = call(a.url, a.token, "POST", "/v1/agents", {"agent_id": agent, "spawn": [i, 0]})
        if status != 201:
            print(json.dumps({"error": "register", "status": status, "body": body}))
            return 1

    ws_url = a.url.replace("http", "ws", 1) + "/v1/stream?agents=" + ",".join(agents)
    async with websockets.connect(ws_url, additional_headers={"Authorization": "Bearer " + a.token},
                                  subprotocols=["gunn.web.v1"]) as ws:
        seen = {}  # the newest global_seq each agent's view reflects

        async def read():
            async for raw in ws:
                m = json.loads(raw)
                views.apply(m)
                if m["type"] in ("view", "observation"):
                    seen[m["agent_id"]] = max(seen.get(m["agent_id"], 0), m["global_seq"])

        reader = asyncio.create_task(read())
        while not all(x in views.docs for x in agents):
            await asyncio.sleep(0.01)
        committed, stale = [], 0
        for n in range(a.moves):
            for i, agent in enumerate(agents):
                attempt = 0
                while True:
                    # Decide on the view this client holds; a refusal as stale means others moved
                    # meanwhile: wait for the stream to show it, then decide again under a new key.
                    intent = {"kind": "Move", "payload": {"to": [i + n + 1, n]}, "context_seq": views.seqs[agent]}
                    status, body = await asyncio.to_thread(call, a.url, a.token, "POST", f"/v1/agents/{agent}/intents", intent,
                                                           {"Idempotency-Key": f"{agent}-move-{n}-{attempt}"})
                    if status == 200:
                        committed.append(body["effect"]["global_seq"])
                        break
                    if status == 409 and body.get("name") == "STALE_CONTEXT" and attempt < 50:
                        stale += 1
                        attempt += 1
                        for _ in range(100):
                            if views.seqs[agent] > intent["context_seq"]:
                                break
                            await asyncio.sleep(0.01)
                        continue
                    print(json.dumps({"error": "intent", "status": status, "body": body}))
                    return 1
        # Read until every agent's view reflects the last commit.
        last = max(committed)
        for _ in range(2000):
            if all(seen.get(x, 0) >= last for x in agents):
                break
            await asyncio.sleep(0.01)
        reader.cancel()

    same = True
    for agent in agents:
        status, body = call(a.url, a.token, "GET", f"/v1/agents/{agent}/view")
        if status != 200 or rfc8785.dumps(body["view"]) != rfc8785.dumps(views.docs[agent]) or body["view_seq"] != views.seqs[agent] \
                or body["context_digest"] != digest(views.docs[agent]):
            same = False
            views.failures.append(f"{agent}: rebuilt view differs from GET view")
    print(json.dumps({"agents": agents, "committed": len(committed), "checked": views.checked, "same": same,
                      "stale_retries": stale, "failures": views.failures}, sort_keys=True))
    return 0 if same and not views.failures else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
