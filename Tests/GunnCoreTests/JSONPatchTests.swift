import XCTest
@testable import GunnCore

final class JSONPatchTests: XCTestCase {
    func testAllSixOperations() throws {
        let doc: JSONValue = ["a": 1, "list": [1, 2, 3], "obj": ["x": "y"]]
        let patch = try JSONPatch(json: JSONParser.parse("""
            [{"op":"test","path":"/a","value":1},
             {"op":"add","path":"/b","value":{"c":[]}},
             {"op":"remove","path":"/list/0"},
             {"op":"replace","path":"/obj/x","value":"z"},
             {"op":"move","from":"/a","path":"/b/c/-"},
             {"op":"copy","from":"/list","path":"/copied"}]
            """))
        let result = try patch.apply(to: doc)
        XCTAssertEqual(result, ["b": ["c": [1]], "list": [2, 3], "obj": ["x": "z"], "copied": [2, 3]])
        XCTAssertEqual(try JSONPatch(json: patch.json), patch, "JSON form round-trips")
    }

    func testFailingPatchLeavesTheDocumentUnchanged() throws {
        let doc: JSONValue = ["a": ["b": 1], "list": [1]]
        let before = doc
        let patch = JSONPatch([
            .add(path: try JSONPointer("/a/c"), value: 2),
            .remove(path: try JSONPointer("/list/0")),
            .test(path: try JSONPointer("/a/b"), value: 99),
        ])
        XCTAssertThrowsError(try patch.apply(to: doc)) { error in
            XCTAssertEqual((error as? JSONPatchError)?.operationIndex, 2)
        }
        XCTAssertEqual(doc, before)
        XCTAssertEqual(CanonicalJSON.encode(doc), CanonicalJSON.encode(before))
    }

    func testMoveIntoOwnChildIsRefused() throws {
        let patch = JSONPatch([.move(from: try JSONPointer("/a"), path: try JSONPointer("/a/b"))])
        XCTAssertThrowsError(try patch.apply(to: ["a": ["x": 1]]))
    }

    func testMalformedPatchDocumentsAreRefused() throws {
        for text in [#"{}"#, #"[1]"#, #"[{"path":"/a"}]"#, #"[{"op":"add","path":"/a"}]"#, #"[{"op":"nope","path":"/a"}]"#,
                     #"[{"op":"move","path":"/a"}]"#, #"[{"op":"add","path":5,"value":1}]"#, #"[{"op":"add","path":"a","value":1}]"#] {
            XCTAssertThrowsError(try JSONPatch(json: JSONParser.parse(text)), text)
        }
    }
}
