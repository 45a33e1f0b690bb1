import Foundation
import Glibc
import XCTest
import GunnCore
@testable import GunnLLM

/// HTTPS through libssl against the local streaming server serving TLS with a certificate made
/// for the test (openssl req, for DNS name localhost only).
final class TLSStreamTests: XCTestCase {
    var server: Process!
    var port: UInt16 = 0
    var serverOut: FileHandle!
    var dir: String!
    var cert: String { dir + "/cert.pem" }

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("gunn-tls-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let gen = Process()
        gen.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        gen.arguments = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", dir + "/key.pem", "-out", cert, "-days", "2",
                         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"]
        gen.standardOutput = FileHandle.nullDevice; gen.standardError = FileHandle.nullDevice
        try gen.run()
        gen.waitUntilExit()
        XCTAssertEqual(gen.terminationStatus, 0, "openssl req")
        (server, serverOut, port) = try HTTPStreamTests.startStreamServer(["--tls", cert, dir + "/key.pem"])
    }

    override func tearDownWithError() throws {
        server.terminate()
        server.waitUntilExit()
        try? FileManager.default.removeItem(atPath: dir)
    }

    func backend(host: String = "localhost", caFile: String?) -> HTTPBackend {
        var b = HTTPBackend(host: host, port: port, format: .openAISSE)
        b.tls = true
        b.caFile = caFile
        return b
    }

    func params(_ model: String) -> GenerationParams {
        var p = GenerationParams(messages: [("user", "hi")])
        p.model = model
        return p
    }

    func testAStreamOverTLSWithATrustedCertificate() {
        let ok = GenerationRunner.run(backend(caFile: cert), params("ok"))
        XCTAssertEqual(ok.tokens, ["Hello", ",", " wörld"])
        XCTAssertEqual(ok.end, .completed(reason: nil))
    }

    func testAnUntrustedCertificateOrAWrongNameIsRefused() {
        // Self-signed: not among the system's roots.
        guard case .failed(let untrusted) = GenerationRunner.run(backend(caFile: nil), params("ok")).end else { return XCTFail("an untrusted certificate must fail") }
        XCTAssertEqual(untrusted.code, .llmServiceError)
        XCTAssertTrue(untrusted.message.contains("certificate"), untrusted.message)
        // Trusted, but made for localhost, not for the address 127.0.0.1.
        guard case .failed(let wrongName) = GenerationRunner.run(backend(host: "127.0.0.1", caFile: cert), params("ok")).end else { return XCTFail("a name mismatch must fail") }
        XCTAssertTrue(wrongName.message.contains("certificate"), wrongName.message)
        // Plain HTTP to a TLS server: a malformed response, not a hang.
        guard case .failed(let plain) = GenerationRunner.run(HTTPBackend(host: "127.0.0.1", port: port, format: .openAISSE), params("ok")).end else { return XCTFail("plain HTTP to TLS must fail") }
        XCTAssertEqual(plain.code, .llmServiceError)
    }

    func testCancelClosesATLSStreamAndTheServerStops() {
        let r = GenerationRunner.run(backend(caFile: cert), params("slow"), cancelAfter: 5)
        XCTAssertEqual(r.end, .cancelled(reason: "stale_due_to:42"))
        XCTAssertEqual(r.tokens.count, 5)
        XCTAssertEqual(r.afterEnd, 0)
        let said = String(decoding: serverOut.availableData, as: UTF8.self)
        XCTAssertTrue(said.contains("closed after"), said)
    }
}
