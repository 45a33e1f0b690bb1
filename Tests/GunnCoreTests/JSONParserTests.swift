import XCTest
@testable import GunnCore

final class JSONParserTests: XCTestCase {
    func parseError(_ text: String, _ options: JSONParseOptions = .default, file: StaticString = #filePath, line: UInt = #line) -> JSONParseError? {
        parseError(Array(text.utf8), options, file: file, line: line)
    }

    func parseError(_ bytes: [UInt8], _ options: JSONParseOptions = .default, file: StaticString = #filePath, line: UInt = #line) -> JSONParseError? {
        do {
            let v = try JSONParser.parse(bytes, options: options)
            XCTFail("expected an error, parsed \(v)", file: file, line: line)
            return nil
        } catch {
            return error
        }
    }

    func testParsesEveryKindOfValue() throws {
        let v = try JSONParser.parse(#" { "a" : [1, -2.5, 3e2, true, false, null, "x\ny\u00e9\ud83d\ude00"], "b": {} , "c": [] } "#)
        XCTAssertEqual(v, ["a": [1, -2.5, 300, true, false, nil, "x\nyé😀"], "b": [:], "c": []])
        XCTAssertEqual(try JSONParser.parse("0"), 0)
        XCTAssertEqual(try JSONParser.parse("-0"), .number(-0.0))
        XCTAssertEqual(try JSONParser.parse("123456789012345678901234567890"), .number(1.2345678901234568e29))
        XCTAssertEqual(try JSONParser.parse("\"\\/\\b\\f\\r\\t\\\"\\\\\""), "/\u{8}\u{c}\r\t\"\\")
    }

    func testErrorsNameTheByteOffsetAndProblem() {
        let e = parseError(#"{"a": [1, 2,]}"#)
        XCTAssertEqual(e?.offset, 12)
        XCTAssertEqual(e?.problem, .unexpectedByte(UInt8(ascii: "]"), expected: "a JSON value"))
        XCTAssertEqual(e?.description, "invalid JSON at byte 12: unexpected byte ']', expected a JSON value")
        XCTAssertEqual(e?.errorCode, .invalidJSON)
        XCTAssertEqual(parseError("")?.problem, .empty)
        XCTAssertEqual(parseError("   ")?.problem, .unexpectedEnd)
        XCTAssertEqual(parseError("[1] x")?.problem, .trailingContent)
        XCTAssertEqual(parseError("[1] x")?.offset, 4)
        XCTAssertEqual(parseError("tru")?.problem, .unexpectedEnd)
        XCTAssertEqual(parseError("nul1")?.offset, 3)
    }

    func testRejectsWhatRFC8259DoesNotAllow() {
        for bad in ["01", "-", "1.", ".5", "1e", "1e+", "+1", "NaN", "Infinity", "-Infinity", "0x10",
                    "[1,]", "{\"a\":1,}", "{a:1}", "{'a':1}", "// c\n1", "[1 2]", "{\"a\" 1}", "\"\\x\"", "\"\\u12\"",
                    "\"\u{1}\"", "\"tab\there\"", "[", "{", "\"open"] {
            XCTAssertNotNil(parseError(bad), bad)
        }
    }

    func testDuplicateKeysAreRefused() {
        let e = parseError(#"{"a": 1, "b": 2, "a": 3}"#)
        XCTAssertEqual(e?.problem, .duplicateKey("a"))
        XCTAssertEqual(e?.offset, 17)
        // Same characters, different bytes (precomposed vs decomposed): two keys, not a duplicate.
        XCTAssertNoThrow(try JSONParser.parse("{\"\u{e9}\": 1, \"e\u{301}\": 2}"))
        XCTAssertEqual(parseError(#"{"\u0061": 1, "a": 2}"#)?.problem, .duplicateKey("a"))
    }

    func testHundredThousandNestedBracketsIsAnErrorNotACrash() {
        let deep = [UInt8](repeating: UInt8(ascii: "["), count: 100_000)
        let e = parseError(deep)
        XCTAssertEqual(e?.problem, .tooDeep(limit: 512))
        XCTAssertEqual(e?.offset, 512)
        // Within the limit it parses, and a custom limit is honoured.
        let ok = String(repeating: "[", count: 512) + String(repeating: "]", count: 512)
        XCTAssertNoThrow(try JSONParser.parse(ok))
        XCTAssertEqual(parseError(ok, JSONParseOptions(maxDepth: 10))?.problem, .tooDeep(limit: 10))
        let deepObject = String(repeating: "{\"k\":", count: 600) + "1" + String(repeating: "}", count: 600)
        XCTAssertEqual(parseError(deepObject)?.problem, .tooDeep(limit: 512))
    }

    func testValidDocumentCutAtEveryByteOffsetIsAnError() throws {
        let doc = Array(#"{"agents": [{"id": "a-1", "pos": [1.5, -2e3], "ok": true, "note": null, "s": "h\u00e9\"llo"}], "n": 12}"#.utf8)
        XCTAssertNoThrow(try JSONParser.parse(doc))
        for cut in 0..<doc.count {
            XCTAssertNotNil(parseError(Array(doc[..<cut])), "prefix of \(cut) bytes parsed")
        }
    }

    func testInvalidUTF8IsRefused() {
        let cases: [[UInt8]] = [
            [0x22, 0xff, 0x22],             // never valid
            [0x22, 0xc3, 0x22],             // truncated 2-byte sequence
            [0x22, 0xc0, 0xaf, 0x22],       // overlong '/'
            [0x22, 0xe0, 0x80, 0xaf, 0x22], // overlong 3-byte
            [0x22, 0xed, 0xa0, 0x80, 0x22], // encoded surrogate U+D800
            [0x22, 0xf4, 0x90, 0x80, 0x80, 0x22], // above U+10FFFF
            [0x22, 0x80, 0x22],             // lone continuation byte
            [0x22, 0x5c, 0x6e, 0xe2, 0x82, 0x22], // truncated after an escape
        ]
        for bytes in cases {
            XCTAssertEqual(parseError(bytes)?.problem, .invalidUTF8, "\(bytes)")
        }
        XCTAssertEqual(try JSONParser.parse([0x22, 0xf0, 0x9f, 0x98, 0x80, 0x22]), "😀")
    }

    func testLoneSurrogatesAreRefused() {
        XCTAssertEqual(parseError(#""\ud800""#)?.problem, .loneSurrogate)
        XCTAssertEqual(parseError(#""\udc00""#)?.problem, .loneSurrogate)
        XCTAssertEqual(parseError(#""\ud800\u0041""#)?.problem, .loneSurrogate)
        XCTAssertEqual(parseError(#""\ud800x""#)?.problem, .loneSurrogate)
    }

    func testHugeExponentIsOutOfRange() {
        XCTAssertEqual(parseError("1e999999")?.problem, .numberOutOfRange)
        XCTAssertEqual(parseError("[-1e309]")?.problem, .numberOutOfRange)
        XCTAssertEqual(try JSONParser.parse("1e-999999"), 0) // underflow rounds to zero, as in IEEE
    }

    func testFiftyMegabyteStringAgainstOneMegabyteLimit() {
        var big = [UInt8](repeating: UInt8(ascii: "a"), count: 50 << 20)
        big[0] = UInt8(ascii: "\"")
        big[big.count - 1] = UInt8(ascii: "\"")
        let e = parseError(big, JSONParseOptions(maxInputBytes: 1 << 20))
        XCTAssertEqual(e?.problem, .tooLarge(limit: 1 << 20, actual: 50 << 20))
        XCTAssertEqual(e?.errorCode, .payloadTooLarge)
        XCTAssertEqual(e?.gunnError.code, .payloadTooLarge)
    }
}
