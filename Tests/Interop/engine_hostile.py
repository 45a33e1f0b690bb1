"""A hostile game engine against gunn-adapter-unity (Python websockets): garbage, frames of the
wrong kind, unknown bodies, answers to commands never sent, a flood of contacts. Prints one JSON
summary: the error codes gunn answered with, and whether a normal tick is still acknowledged.

  engine_hostile.py URL TOKEN
"""
import asyncio
import json
import sys

import websockets


async def errors_until_ack(ws, tick, seen):
    """Reads frames until the TickAck of `tick`, collecting error codes."""
    while True:
        m = json.loads(await asyncio.wait_for(ws.recv(), timeout=20))
        if "error" in m:
            seen.append((m["error"]["name"], m["error"].get("message", "")))
        if "tickAck" in m and m["tickAck"].get("tick") == str(tick):
            return


async def main():
    url, token = sys.argv[1], sys.argv[2]
    out = {}
    async with websockets.connect(url, subprotocols=["gunn.engine.v1+json"], max_size=None) as ws:
        await ws.send(json.dumps({"hello": {"engineName": "hostile", "protocolMajor": 1, "token": token}}))
        welcome = json.loads(await ws.recv())
        out["welcome"] = "welcome" in welcome
        sync = json.loads(await ws.recv())
        out["sync"] = "sync" in sync
        await ws.send(json.dumps({"bodies": {"bodies": [{"id": "X", "pos": [0, 0]}, {"id": "Y", "pos": [1, 0]}]}}))
        await ws.send(json.dumps({"syncDone": {"bodies": 2}}))
        seen = []
        await ws.send("this is not json")
        await ws.send(b"\x00\x01binary on the json subprotocol")
        await ws.send(json.dumps({"tick": {"tick": "1", "colour": "red"}}))
        await ws.send(json.dumps({"tick": {"tick": "1"}, "heartbeat": {}}))
        await ws.send(json.dumps({"welcome": {}}))
        await ws.send(json.dumps({"hello": {"engineName": "again", "protocolMajor": 1}}))
        await ws.send(json.dumps({"commandResult": {"commandSeq": "999999", "status": "done"}}))
        await ws.send(json.dumps({"commandResult": {"commandSeq": "5", "status": "maybe"}}))
        await ws.send(json.dumps({"bodyRemove": {"ids": ["ghost"]}}))
        await ws.send(json.dumps({"bodies": {"bodies": [{"id": "X", "fields": {"engine": "other"}}]}}))
        await ws.send(json.dumps({"tick": {"tick": "2", "simTime": 0.1, "contacts": [{"a": "X", "b": "ghost"}]}}))
        await errors_until_ack(ws, 2, seen)
        # A flood: 20 ticks of 500 contacts each, past --contacts-per-second.
        for t in range(3, 23):
            await ws.send(json.dumps({"tick": {"tick": str(t), "simTime": t / 60, "contacts": [{"a": "X", "b": "Y"}] * 500}}))
        await errors_until_ack(ws, 22, seen)
        # Still served: a normal tick is acknowledged.
        await ws.send(json.dumps({"tick": {"tick": "23", "simTime": 0.5, "bodies": [{"id": "X", "pos": [0.5, 0]}]}}))
        await errors_until_ack(ws, 23, seen)
        out["after"] = "acked"
        out["errors"] = sorted({name for name, _ in seen})
        out["messages"] = sorted({msg[:60] for _, msg in seen if "ghost" in msg or "999999" in msg})
    # The binary subprotocol: garbage is refused, a Hello in protobuf gets a Welcome in protobuf.
    async with websockets.connect(url, subprotocols=["gunn.engine.v1+proto"]) as ws:
        await ws.send(b"\xff\xff\xff")
        err = await asyncio.wait_for(ws.recv(), timeout=20)
        out["binary_error_tag"] = err[0] if isinstance(err, bytes) else None
        tok = token.encode()
        hello = b"\x0a\x06binary" + b"\x18\x01" + b"\x32" + bytes([len(tok) & 0x7f | 0x80, len(tok) >> 7]) + tok
        await ws.send(b"\x52" + bytes([len(hello) & 0x7f | 0x80, len(hello) >> 7]) + hello)
        reply = await asyncio.wait_for(ws.recv(), timeout=20)
        out["binary_welcome_tag"] = reply[0] if isinstance(reply, bytes) else None
    print(json.dumps(out, sort_keys=True))


asyncio.run(main())
