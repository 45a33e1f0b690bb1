import Glibc
import XCTest
@testable import GunnIO

/// The TCP listening primitives (for the HTTP and WebSocket server): a port picked by the
/// kernel, a real connection accepted and bytes carried both ways, bad hosts and taken ports
/// refused with the errno named.
final class TCPListenTests: XCTestCase {
    func waitFor(_ fd: Int32, _ events: Int16) throws {
        var fds = [pollfd(fd: fd, events: events, revents: 0)]
        XCTAssertEqual(try Sys.poll(&fds, timeoutMs: 5000), 1, "no event within 5 s")
    }

    func testAPortPickedByTheKernelAcceptsAConnectionAndCarriesBytes() throws {
        let (listener, port) = try Sys.listenTCP(host: "127.0.0.1", port: 0)
        defer { Sys.close(listener) }
        XCTAssertGreaterThan(port, 0)
        XCTAssertEqual(try Sys.localPort(listener), port)
        guard case .success(let addresses) = Sys.resolveStream(host: "127.0.0.1", port: port), let address = addresses.first else {
            return XCTFail("cannot resolve 127.0.0.1")
        }
        let client = try Sys.socket(for: address)
        defer { Sys.close(client) }
        if try !Sys.connect(client, to: address) { try waitFor(client, Int16(POLLOUT)) }
        XCTAssertEqual(Sys.socketError(client), 0)
        try waitFor(listener, Int16(POLLIN))
        let server = try XCTUnwrap(try Sys.accept(listener))
        defer { Sys.close(server) }
        try Sys.setNoDelay(server)
        let hello = Array("GET / HTTP/1.1\r\n\r\n".utf8)
        XCTAssertEqual(try hello.withUnsafeBytes { try Sys.write(client, $0) }, hello.count)
        try waitFor(server, Int16(POLLIN))
        var buffer = [UInt8](repeating: 0, count: 64)
        let n = try XCTUnwrap(try buffer.withUnsafeMutableBytes { try Sys.read(server, $0) })
        XCTAssertEqual(Array(buffer[..<n]), hello)
    }

    func testABadHostOrATakenPortIsRefusedWithItsErrno() throws {
        XCTAssertThrowsError(try Sys.listenTCP(host: "not-an-address", port: 0)) { XCTAssertEqual(($0 as? Errno)?.code, EINVAL) }
        let (first, port) = try Sys.listenTCP(host: "127.0.0.1", port: 0)
        defer { Sys.close(first) }
        XCTAssertThrowsError(try Sys.listenTCP(host: "127.0.0.1", port: port)) { XCTAssertEqual(($0 as? Errno)?.code, EADDRINUSE) }
    }
}
