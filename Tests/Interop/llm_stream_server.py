#!/usr/bin/env python3
"""A small streaming LLM server for GunnLLM's tests, speaking the real wire formats.

OpenAI-compatible POST /v1/chat/completions with "stream": true (Server-Sent Events, chunked
transfer encoding) and Ollama-style POST /api/generate (NDJSON). The request's "model" picks the
behaviour: ok, cut (the stream stops mid-token without [DONE]), 500, garbage, stall (one token,
then silence), slow (a token every 20 ms, 500 of them: for cancellation), late (like ok after
1 s: a slow first token). Prints "port N" once
listening; after a client closes a slow stream it prints "closed after N tokens".
With `--tls CERT KEY` it serves HTTPS with that certificate.
"""
import json
import socketserver
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def chunk(text, finish=None):
    delta = {} if text is None else {"content": text}
    return {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send_chunk(self, data: bytes):
        self.wfile.write(b"%x\r\n" % len(data) + data + b"\r\n")
        self.wfile.flush()

    def start(self, content_type):
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        mode = body.get("model", "ok")
        if mode == "500":
            payload = b'{"error":{"message":"model exploded","code":500}}'
            self.send_response(500)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        if self.path in ("/api/generate", "/api/chat"):
            self.start("application/x-ndjson")
            if mode == "error":
                self.send_chunk(b'{"response":"a","done":false}\n{"error":"out of memory"}\n')
            else:
                for t in ["Hel", "lo"]:
                    self.send_chunk(json.dumps({"model": "m", "response": t, "done": False}).encode() + b"\n")
                self.send_chunk(json.dumps({"model": "m", "response": "", "done": True, "done_reason": "stop"}).encode() + b"\n")
            self.send_chunk(b"")
            return
        if mode == "late":
            time.sleep(1.0)
            mode = "ok"
        self.start("text/event-stream")
        try:
            if mode == "ok":
                self.send_chunk(b'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":null}}]}\n\n')
                self.send_chunk(b": ping\n\n")
                for t in ["Hello", ",", " w\u00f6rld"]:
                    self.send_chunk(b"data: " + json.dumps(chunk(t)).encode() + b"\n\n")
                self.send_chunk(b"data: " + json.dumps(chunk(None, "stop")).encode() + b"\n\ndata: [DONE]\n\n")
            elif mode == "cut":
                self.send_chunk(b"data: " + json.dumps(chunk("Hel")).encode() + b"\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"lo")
                self.wfile.flush()
                self.connection.shutdown(2)
                return
            elif mode == "garbage":
                self.send_chunk(b"data: " + json.dumps(chunk("a")).encode() + b"\n\ndata: <html>oops</html>\n\n")
            elif mode == "stall":
                self.send_chunk(b"data: " + json.dumps(chunk("a")).encode() + b"\n\n")
                time.sleep(30)
                return
            elif mode == "slow":
                sent = 0
                try:
                    for i in range(500):
                        self.send_chunk(b"data: " + json.dumps(chunk("t%d " % i)).encode() + b"\n\n")
                        sent += 1
                        time.sleep(0.02)
                except OSError:  # a broken pipe or reset, or its TLS form (ssl.SSLError)
                    print("closed after %d tokens" % sent, flush=True)
                    return
            self.send_chunk(b"")
        except OSError:
            return


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


if __name__ == "__main__":
    srv = Server(("127.0.0.1", 0), Handler)
    if len(sys.argv) == 4 and sys.argv[1] == "--tls":
        import ssl
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(sys.argv[2], sys.argv[3])
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    print("port %d" % srv.server_address[1], flush=True)
    srv.serve_forever()
