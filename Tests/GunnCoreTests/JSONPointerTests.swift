import XCTest
@testable import GunnCore

final class JSONPointerTests: XCTestCase {
    // RFC 6901 section 5.
    let doc: JSONValue = [
        "foo": ["bar", "baz"], "": 0, "a/b": 1, "c%d": 2, "e^f": 3, "g|h": 4, "i\\j": 5, "k\"l": 6, " ": 7, "m~n": 8,
    ]

    func testRFC6901Examples() throws {
        let cases: [(String, JSONValue)] = [
            ("", doc), ("/foo", ["bar", "baz"]), ("/foo/0", "bar"), ("/", 0), ("/a~1b", 1), ("/c%d", 2),
            ("/e^f", 3), ("/g|h", 4), ("/i\\j", 5), ("/k\"l", 6), ("/ ", 7), ("/m~0n", 8),
        ]
        for (text, expected) in cases {
            let p = try JSONPointer(text)
            XCTAssertEqual(p.resolve(in: doc), expected, text)
            XCTAssertEqual(p.description, text, "round trip")
        }
    }

    func testEscapesDecodeInOrder() throws {
        XCTAssertEqual(try JSONPointer("/~01").tokens, ["~1"]) // not "/"
        XCTAssertEqual(try JSONPointer("/a/~1/").tokens, ["a", "/", ""])
        XCTAssertEqual(JSONPointer(tokens: ["~1"]).description, "/~01")
    }

    func testInvalidPointersAreRefused() {
        XCTAssertThrowsError(try JSONPointer("foo"))
        XCTAssertThrowsError(try JSONPointer("/~2"))
        XCTAssertThrowsError(try JSONPointer("/~"))
    }

    func testArrayIndexRules() throws {
        XCTAssertEqual(JSONPointer.arrayIndex("0"), 0)
        XCTAssertEqual(JSONPointer.arrayIndex("17"), 17)
        XCTAssertNil(JSONPointer.arrayIndex("01"))
        XCTAssertNil(JSONPointer.arrayIndex("-"))
        XCTAssertNil(JSONPointer.arrayIndex("1e0"))
        XCTAssertNil(JSONPointer.arrayIndex(""))
        XCTAssertNil(JSONPointer.arrayIndex("99999999999999999999999"))
        XCTAssertNil(try JSONPointer("/foo/2").resolve(in: doc))
        XCTAssertNil(try JSONPointer("/foo/-").resolve(in: doc))
        // "-" appends with add.
        let patched = try JSONPatch([.add(path: JSONPointer("/foo/-"), value: "qux")]).apply(to: doc)
        XCTAssertEqual(try JSONPointer("/foo/2").resolve(in: patched), "qux")
    }
}
