import XCTest
import GunnCore
@testable import GunnLLM

/// The HTTP response framing on bytes, cut into reads at every size.
final class HTTPResponseReaderTests: XCTestCase {
    /// The body, or the error; `chunk` bytes per read; `stallAfter` reads → a stall.
    func read(_ text: String, chunk: Int = .max, stallAfter: Int? = nil) -> Result<[UInt8], GunnError> {
        var reader = HTTPResponseReader(stallSeconds: 1, source: HTTPResponseReader.source(Array(text.utf8), chunk: chunk, stallAfter: stallAfter))
        var body: [UInt8] = []
        do {
            try reader.readResponse(from: "test") { body += $0 }
            return .success(body)
        } catch let e as GunnError {
            return .failure(e)
        } catch {
            return .failure(GunnError(.internalError, "\(error)"))
        }
    }

    func testTheThreeBodyFramingsAtEveryChunkSize() {
        let cases: [(String, String)] = [
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nTrailer: x\r\n\r\n", "hello, world"),
            ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA", "hello"),
            ("HTTP/1.0 200 OK\nX: y\n\nuntil the end", "until the end"),
        ]
        for (response, body) in cases {
            for chunk in [1, 2, 3, 7, 64, .max] {
                XCTAssertEqual(try? read(response, chunk: chunk).get(), Array(body.utf8), "\(response) by \(chunk)")
            }
        }
    }

    func testHostileResponsesAreLLMServiceErrors() {
        let cases: [(String, String)] = [
            ("", "closed in the middle"),
            ("garbage\r\n\r\n", "status line"),
            ("HTTP/1.1 20 OK\r\n\r\n", "status line"),
            ("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 9\r\n\r\nexploded!", "HTTP 500 from test: exploded!"),
            ("HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "header line"),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "chunk size"),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\n", "chunk size"),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFFFF\r\n", "chunk size"),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcdef\r\n", "no CRLF"),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nshort", "before the body was complete"),
            ("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "Content-Length"),
            ("HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n", "Content-Length"),
            ("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", "before the body was complete"),
            ("HTTP/1.1 200 OK\r\n" + String(repeating: "X: y\r\n", count: 200) + "\r\n", "headers"),
            ("HTTP/1.1 200 OK\r\nX: " + String(repeating: "a", count: 70_000) + "\r\n\r\n", "a line over"),
        ]
        for (response, expected) in cases {
            for chunk in [1, 5, .max] {
                guard case .failure(let e) = read(response, chunk: chunk) else { XCTFail("\(response.prefix(60)) must fail"); continue }
                XCTAssertEqual(e.code, .llmServiceError, "\(response.prefix(60))")
                XCTAssertTrue(e.message.contains(expected), "\(response.prefix(60)) by \(chunk): \(e.message)")
            }
        }
        guard case .failure(let stall) = read("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab", chunk: 20, stallAfter: 1) else { return XCTFail() }
        XCTAssertTrue(stall.message.contains("stalled"), stall.message)
    }
}
