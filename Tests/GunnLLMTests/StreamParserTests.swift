import XCTest
import GunnCore
@testable import GunnLLM

final class SSEParserTests: XCTestCase {
    func events(_ text: String, chunk: Int = .max) throws -> [SSEParser.Event] {
        var p = SSEParser()
        let bytes = Array(text.utf8)
        var out: [SSEParser.Event] = []
        var i = 0
        while i < bytes.count {
            let j = min(bytes.count, i + max(1, min(chunk, bytes.count)))
            out += try p.feed(bytes[i..<j])
            i = j
        }
        return out
    }

    func testTheWHATWGExamples() throws {
        // Comments, multi-line data, a field without a colon, the single space after the colon.
        XCTAssertEqual(try events(": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n").map(\.data),
                       ["first event", "second event", " third event"])
        XCTAssertEqual(try events("data: YHOO\ndata: +2\ndata: 10\n\n").map(\.data), ["YHOO\n+2\n10"])
        XCTAssertEqual(try events("data\n\ndata\ndata\n\ndata:\n").map(\.data), ["", "\n"], "the last event is never dispatched")
        XCTAssertEqual(try events("event: add\ndata: 73857293\n\nevent: remove\ndata: 2153\n\n").map(\.type), ["add", "remove"])
        XCTAssertEqual(try events("id: 7\ndata: x\n\n").first?.id, "7")
        XCTAssertEqual(try events("retry: 10\nunknown: y\n\n"), [], "no data, no event")
    }

    func testLineEndingsAndChunkingNeverChangeTheEvents() throws {
        let lf = "data: a\n\n: ping\n\ndata: {\"x\":1}\ndata: é€😀\n\ndata: [DONE]\n\n"
        let expected = try events(lf)
        XCTAssertEqual(expected.map(\.data), ["a", "{\"x\":1}\né€😀", "[DONE]"])
        for ending in ["\r\n", "\r"] {
            let text = lf.replacingOccurrences(of: "\n", with: ending)
            for chunk in 1...9 { XCTAssertEqual(try events(text, chunk: chunk), expected, "ending \(ending.debugDescription), chunk \(chunk)") }
        }
        XCTAssertEqual(try events("\u{FEFF}data: bom\n\n").map(\.data), ["bom"])
        XCTAssertEqual(try events("\u{FEFF}data: bom\n\n", chunk: 1).map(\.data), ["bom"])
    }

    func testHostileStreamsAreCodedErrors() {
        var p = SSEParser(maxLineBytes: 64)
        XCTAssertThrowsError(try p.feed(Array(repeating: UInt8(ascii: "a"), count: 100))) { XCTAssertEqual(($0 as? GunnError)?.code, .llmServiceError) }
        var q = SSEParser()
        XCTAssertThrowsError(try q.feed([UInt8]("data: ".utf8) + [0xFF, 0xFE, 0x0A, 0x0A])) { XCTAssertEqual(($0 as? GunnError)?.code, .llmServiceError) }
    }
}

final class TokenStreamDecoderTests: XCTestCase {
    func decode(_ format: TokenStreamDecoder.Format, _ text: String, chunk: Int = 7) throws -> [StreamChunk] {
        var d = TokenStreamDecoder(format: format)
        let bytes = Array(text.utf8)
        var out: [StreamChunk] = []
        var i = 0
        while i < bytes.count {
            let j = min(bytes.count, i + chunk)
            out += try d.feed(bytes[i..<j])
            i = j
        }
        out += try d.finish()
        return out
    }

    func testOpenAIStreamsOfBothRealServers() throws {
        // llama-server: the first delta has "content": null; raw UTF-8; several events in one read.
        let llamaServer = """
        data: {"choices":[{"finish_reason":null,"index":0,"delta":{"role":"assistant","content":null}}],"object":"chat.completion.chunk"}

        data: {"choices":[{"finish_reason":null,"index":0,"delta":{"content":"Hé"}}],"object":"chat.completion.chunk"}

        data: {"choices":[{"finish_reason":null,"index":0,"delta":{"content":"llo"}}],"object":"chat.completion.chunk"}

        data: {"choices":[{"finish_reason":"stop","index":0,"delta":{}}],"object":"chat.completion.chunk"}

        data: [DONE]


        """
        XCTAssertEqual(try decode(.openAISSE, llamaServer), [.token("Hé"), .token("llo"), .done(reason: "stop")])
        // llama-cpp-python: no content key in the first delta, \\u escapes, a keep-alive comment.
        let python = "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\r\n\r\n: ping - 2026-11-25\r\n\r\ndata: {\"choices\":[{\"delta\":{\"content\":\"H\\u00e9\"}}]}\r\n\r\ndata: {\"choices\":[{\"delta\":{},\"finish_reason\":\"length\"}]}\r\n\r\ndata: [DONE]\r\n\r\n"
        for chunk in [1, 3, 64, 4096] {
            XCTAssertEqual(try decode(.openAISSE, python, chunk: chunk), [.token("Hé"), .done(reason: "length")])
        }
    }

    func testOpenAIFailuresAreLLMServiceErrors() {
        let cases = [
            "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n",                       // cut: no [DONE]
            "",                                                                             // an empty stream (a too-long prompt)
            "data: {\"error\":{\"message\":\"boom\",\"code\":500}}\n\n",                   // an error mid-stream
            "data: {not json\n\n",                                                          // garbage
            "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"choi",      // cut mid-token
            "data: {\"id\":1}\n\ndata: [DONE]\n\n",                                          // no choices
        ]
        for text in cases {
            XCTAssertThrowsError(try decode(.openAISSE, text), text) { XCTAssertEqual(($0 as? GunnError)?.code, .llmServiceError, text) }
        }
        XCTAssertThrowsError(try decode(.openAISSE, "data: {\"error\":{\"message\":\"boom\"}}\n\n")) {
            XCTAssertTrue(($0 as? GunnError)?.message.contains("boom") == true)
        }
    }

    func testOllamaStreams() throws {
        let generate = """
        {"model":"m","created_at":"2026-11-25T00:00:00Z","response":"Hel","done":false}
        {"model":"m","created_at":"2026-11-25T00:00:00Z","response":"lo","done":false}

        {"model":"m","created_at":"2026-11-25T00:00:00Z","response":"","done":true,"done_reason":"stop","eval_count":2,"total_duration":12345}
        """
        XCTAssertEqual(try decode(.ollamaNDJSON, generate), [.token("Hel"), .token("lo"), .done(reason: "stop")], "the last line needs no newline")
        let chat = "{\"message\":{\"role\":\"assistant\",\"content\":\"Hi\"},\"done\":false}\r\n{\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true}\r\n"
        XCTAssertEqual(try decode(.ollamaNDJSON, chat, chunk: 1), [.token("Hi"), .done(reason: nil)])
        for bad in ["{\"response\":\"a\",\"done\":false}\n", "{\"error\":\"model not found\"}\n", "garbage\n", "[1,2]\n"] {
            XCTAssertThrowsError(try decode(.ollamaNDJSON, bad), bad) { XCTAssertEqual(($0 as? GunnError)?.code, .llmServiceError) }
        }
    }

    /// Any split of a stream into chunks decodes to the same tokens as the whole.
    func testRandomChunkingIsInvariant() throws {
        var rng = SplitMix64(seed: 4)
        var text = ""
        var expected: [StreamChunk] = []
        for i in 0..<200 {
            let t = "t\(i)\(i % 7 == 0 ? " é😀" : "")"
            text += "data: " + CanonicalJSON.encodeString(["choices": [["delta": ["content": .string(t)]]]]) + (i % 3 == 0 ? "\r\n\r\n" : "\n\n")
            if i % 10 == 0 { text += ": keep-alive\n\n" }
            expected.append(.token(t))
        }
        text += "data: [DONE]\n\n"
        expected.append(.done(reason: nil))
        let bytes = Array(text.utf8)
        for _ in 0..<50 {
            var d = TokenStreamDecoder(format: .openAISSE)
            var out: [StreamChunk] = []
            var i = 0
            while i < bytes.count {
                let j = min(bytes.count, i + 1 + Int(rng.next(below: 40)))
                out += try d.feed(bytes[i..<j])
                i = j
            }
            out += try d.finish()
            XCTAssertEqual(out, expected)
        }
    }
}
