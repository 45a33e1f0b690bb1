import Foundation
import XCTest
import GunnCore
@testable import GunnHTTP

/// Real clients others trust against the server: curl (plain, chunked upload, keep-alive,
/// --http1.1, https with the test's certificate) and Python's urllib and `websockets` (ws and wss).
final class ClientInteropTests: XCTestCase {
    var server: HTTPServer!
    var dir: String!
    var python: String { TestPaths.packageRoot.path + "/.venv-tools/bin/python" }

    override func setUpWithError() throws { dir = try TestPaths.tempDir("http-interop") }

    override func tearDown() async throws {
        await server?.stop()
        try? FileManager.default.removeItem(atPath: dir)
    }

    func start(tls: Bool = false) throws {
        var config = HTTPServerConfiguration()
        if tls {
            let (status, out) = try runProgram("/usr/bin/openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", dir + "/key.pem",
                                                                    "-out", dir + "/cert.pem", "-days", "2", "-subj", "/CN=localhost",
                                                                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
            XCTAssertEqual(status, 0, out)
            config.tls = try TLSServerContext(certificateFile: dir + "/cert.pem", keyFile: dir + "/key.pem")
        }
        server = try HTTPServer(configuration: config, router: makeTestRouter())
    }

    func curl(_ args: [String]) throws -> String {
        let (status, out) = try runProgram("/usr/bin/curl", ["-sS", "--http1.1", "--max-time", "20"] + args)
        XCTAssertEqual(status, 0, "curl \(args): \(out)")
        return out
    }

    func testCurlPlainChunkedUploadAndKeepAlive() throws {
        try start()
        let base = "http://127.0.0.1:\(server.port)"
        let head = try curl(["-i", base + "/hello"])
        XCTAssertTrue(head.hasPrefix("HTTP/1.1 200 OK\r\n"), head)
        XCTAssertTrue(head.hasSuffix("\r\n\r\n{\"ok\":true}"), head)
        // A chunked upload of 700 kB from a file (under the default 1 MiB body limit).
        var data = [UInt8](repeating: 0, count: 700_000)
        var rng = SplitMix64(seed: 9112)
        for i in data.indices { data[i] = UInt8(truncatingIfNeeded: rng.next()) }
        try Data(data).write(to: URL(fileURLWithPath: dir + "/upload.bin"))
        let upload = try curl(["-H", "Transfer-Encoding: chunked", "--data-binary", "@" + dir + "/upload.bin", base + "/upload"])
        let v = try JSONParser.parse(upload)
        XCTAssertEqual(v["bytes"]?.numberValue, 700_000)
        XCTAssertEqual(v["sha256"]?.stringValue, SHA256Hex.of(data))
        // Content-Length upload with Expect: 100-continue.
        let expect = try curl(["-H", "Expect: 100-continue", "--data-binary", "@" + dir + "/upload.bin", base + "/upload"])
        XCTAssertEqual(try JSONParser.parse(expect)["sha256"]?.stringValue, SHA256Hex.of(data))
        // Two transfers on one connection: the second made no new connection.
        let connects = try curl(["-o", "/dev/null", "-o", "/dev/null", "-w", "%{num_connects} ", base + "/hello", base + "/items/7"])
        XCTAssertEqual(connects.trimmingCharacters(in: .whitespaces), "1 0", "keep-alive reuse")
        let tooBig = try runProgram("/usr/bin/curl", ["-sS", "--http1.1", "-o", "/dev/null", "-w", "%{http_code}", "--data-binary", "@" + dir + "/upload.bin",
                                                      "-H", "Content-Length: 2000000", base + "/upload"])
        XCTAssertTrue(tooBig.output.hasPrefix("413"), tooBig.output)
    }

    func testCurlOverHTTPSWithTheTestCertificate() throws {
        try start(tls: true)
        let port = server.port
        let out = try curl(["--cacert", dir + "/cert.pem", "--resolve", "localhost:\(port):127.0.0.1", "-i", "https://localhost:\(port)/hello",
                            "https://localhost:\(port)/items/5?q=tls"])
        XCTAssertTrue(out.hasPrefix("HTTP/1.1 200 OK\r\n"), out)
        XCTAssertTrue(out.contains("{\"ok\":true}"), out)
        XCTAssertTrue(out.hasSuffix("{\"id\":5,\"q\":\"tls\"}"), out)
        // Without trusting the certificate, curl refuses (the server really speaks TLS with it).
        let untrusted = try runProgram("/usr/bin/curl", ["-sS", "--resolve", "localhost:\(port):127.0.0.1", "https://localhost:\(port)/hello"])
        XCTAssertNotEqual(untrusted.status, 0)
        // Plain HTTP to the TLS port is garbage to it: the connection is dropped, the server goes on.
        let plain = try runProgram("/usr/bin/curl", ["-sS", "--max-time", "10", "http://127.0.0.1:\(port)/hello"])
        XCTAssertNotEqual(plain.status, 0)
        XCTAssertTrue(try curl(["--cacert", dir + "/cert.pem", "--resolve", "localhost:\(port):127.0.0.1", "https://localhost:\(port)/hello"]).contains("ok"))
    }

    func testPythonUrllibAndWebsocketsOverPlainAndTLS() throws {
        for tls in [false, true] {
            try start(tls: tls)
            let script = """
            import asyncio, json, ssl, sys, urllib.request, urllib.error
            import websockets
            port, tls, cafile = int(sys.argv[1]), sys.argv[2] == "1", sys.argv[3]
            ctx = ssl.create_default_context(cafile=cafile) if tls else None
            scheme = "https" if tls else "http"
            base = f"{scheme}://localhost:{port}"
            out = {}
            with urllib.request.urlopen(base + "/hello", context=ctx) as r:
                out["hello"] = json.loads(r.read())
                out["server"] = r.headers["Server"]
            req = urllib.request.Request(base + "/json", data=json.dumps({"n": [1, 2.5, "x"]}).encode(), method="PUT",
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, context=ctx) as r:
                out["json"] = json.loads(r.read())
            try:
                urllib.request.urlopen(base + "/missing", context=ctx)
            except urllib.error.HTTPError as e:
                out["missing"] = [e.code, json.loads(e.read())["name"]]
            async def ws():
                uri = ("wss" if tls else "ws") + f"://localhost:{port}/echo"
                async with websockets.connect(uri, subprotocols=["gunn.test.v1"], ssl=ctx, max_size=2**22) as s:
                    out["subprotocol"] = s.subprotocol
                    await s.send("héllo")
                    out["text"] = await s.recv()
                    big = bytes(range(256)) * 4096
                    await s.send(big)
                    out["binary_ok"] = (await s.recv()) == big
                    await s.ping(b"p")
                    await s.close(code=1000, reason="done")
                    out["close"] = s.close_code
            asyncio.run(ws())
            print(json.dumps(out, sort_keys=True))
            """
            try script.write(toFile: dir + "/client.py", atomically: true, encoding: .utf8)
            let (status, output) = try runProgram(python, [dir + "/client.py", String(server.port), tls ? "1" : "0", dir + "/cert.pem"])
            XCTAssertEqual(status, 0, output)
            let expected = "{\"binary_ok\": true, \"close\": 1000, \"hello\": {\"ok\": true}, \"json\": {\"echo\": {\"n\": [1, 2.5, \"x\"]}}, \"missing\": [404, \"NOT_FOUND\"], \"server\": \"gunn\", \"subprotocol\": \"gunn.test.v1\", \"text\": \"h\\u00e9llo\"}"
            XCTAssertEqual(output.trimmingCharacters(in: .whitespacesAndNewlines), expected, tls ? "over TLS" : "plain")
            stopServer()
        }
    }

    private func stopServer() {
        let s = server!
        let done = DispatchSemaphore(value: 0)
        Task { await s.stop(); done.signal() }
        done.wait()
        server = nil
    }
}
