import XCTest
@testable import GunnCore

final class CanonicalJSONTests: XCTestCase {
    func number(_ d: Double) -> String { CanonicalJSON.encodeString(.number(d)) }

    func testNumbersFollowECMAScript() {
        XCTAssertEqual(number(0), "0")
        XCTAssertEqual(number(-0.0), "0")
        XCTAssertEqual(number(1), "1")
        XCTAssertEqual(number(-42), "-42")
        XCTAssertEqual(number(4.5), "4.5")
        XCTAssertEqual(number(0.002), "0.002")
        XCTAssertEqual(number(0.000001), "0.000001")
        XCTAssertEqual(number(1e-7), "1e-7")
        XCTAssertEqual(number(1.5e-7), "1.5e-7")
        XCTAssertEqual(number(1e20), "100000000000000000000")
        XCTAssertEqual(number(1e21), "1e+21")
        XCTAssertEqual(number(1.2345e21), "1.2345e+21")
        XCTAssertEqual(number(9007199254740992), "9007199254740992")
        XCTAssertEqual(number(9007199254740994), "9007199254740994")
        XCTAssertEqual(number(Double("123456789012345680000")!), "123456789012345680000")
        XCTAssertEqual(number(333333333.33333329), "333333333.3333333")
        XCTAssertEqual(number(Double.leastNonzeroMagnitude), "5e-324")
        XCTAssertEqual(number(1.7976931348623157e308), "1.7976931348623157e+308")
        XCTAssertEqual(number(-1e-7), "-1e-7")
        XCTAssertEqual(number(0.1 + 0.2), "0.30000000000000004")
        XCTAssertEqual(number(Double("295147905179352830000")!), "295147905179352830000")
    }

    func testNumbersRoundTripForSeededRandomDoubles() throws {
        var rng = SplitMix64(seed: 7)
        for _ in 0..<20_000 {
            let d = Double(bitPattern: rng.next())
            guard d.isFinite else { continue }
            let text = number(d)
            XCTAssertEqual(Double(text), d == 0 ? 0 : d, text)
            XCTAssertEqual(try JSONParser.parse(text), .number(d))
        }
    }

    func testStringsUseMinimalEscaping() {
        XCTAssertEqual(CanonicalJSON.encodeString("a\"b\\c/d"), #""a\"b\\c/d""#)
        XCTAssertEqual(CanonicalJSON.encodeString("\u{8}\u{9}\u{a}\u{c}\u{d}\u{1}\u{1f}"), #""\b\t\n\f\r\u0001\u001f""#)
        XCTAssertEqual(CanonicalJSON.encodeString("\u{7f}\u{2028}é😀"), "\"\u{7f}\u{2028}é😀\"")
    }

    func testObjectKeysAreSortedByUTF16CodeUnits() {
        // U+E000 is above the high surrogates that encode U+1F600 in UTF-16, so the emoji sorts first,
        // although in UTF-8 and code point order it would sort last.
        let v: JSONValue = ["\u{E000}": 1, "😀": 2, "b": 3, "a": 4, "": 5, "aa": 6, "\u{80}": 7]
        XCTAssertEqual(CanonicalJSON.encodeString(v), "{\"\":5,\"a\":4,\"aa\":6,\"b\":3,\"\u{80}\":7,\"😀\":2,\"\u{E000}\":1}")
    }

    func testEqualityIsByScalarsNotCanonicalEquivalence() {
        XCTAssertNotEqual(JSONValue.string("\u{e9}"), JSONValue.string("e\u{301}"))
        XCTAssertEqual(JSONValue.number(1), JSONValue.number(1.0))
        let a: JSONValue = ["x": 1, "y": [true, nil]]
        let b: JSONValue = ["y": [true, nil], "x": 1.0]
        XCTAssertEqual(a, b)
        XCTAssertEqual(a.hashValue, b.hashValue)
    }
}
