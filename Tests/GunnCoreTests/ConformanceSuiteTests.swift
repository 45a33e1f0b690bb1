import Foundation
import XCTest
@testable import GunnCore

/// The public conformance suites in ../shared/testdata: RFC 8785 (JCS) and RFC 6902 (JSON Patch).
final class ConformanceSuiteTests: XCTestCase {
    func sharedFolder(_ name: String) throws -> URL {
        let url = TestPaths.sharedTestdata.appendingPathComponent(name)
        guard FileManager.default.fileExists(atPath: url.path) else {
            let message = "CONFORMANCE DATA MISSING: \(url.path) does not exist; this suite did NOT run"
            print("warning: \(message)")
            throw XCTSkip(message)
        }
        return url
    }

    func testJCSSuiteReproducesEveryOutputByteForByte() throws {
        let folder = try sharedFolder("jcs")
        let inputs = try FileManager.default.contentsOfDirectory(atPath: folder.appendingPathComponent("input").path).sorted()
        XCTAssertGreaterThanOrEqual(inputs.count, 5)
        for name in inputs {
            let input = try Data(contentsOf: folder.appendingPathComponent("input/\(name)"))
            let expected = try Data(contentsOf: folder.appendingPathComponent("output/\(name)"))
            let value = try JSONParser.parse([UInt8](input))
            let canonical = CanonicalJSON.encode(value)
            XCTAssertEqual(canonical, [UInt8](expected), "\(name): got \(String(decoding: canonical, as: UTF8.self))")
            // Canonical output is a fixed point.
            XCTAssertEqual(CanonicalJSON.encode(try JSONParser.parse(canonical)), canonical, name)
        }
    }

    func testJSONPatchSuitePassesEveryEnabledRecord() throws {
        let file = try sharedFolder("json-patch").appendingPathComponent("tests.json")
        // One (disabled) record repeats "op" on purpose; read the file with last-wins keys.
        let suite = try JSONParser.parse([UInt8](try Data(contentsOf: file)), options: JSONParseOptions(allowDuplicateKeys: true))
        guard case .array(let records) = suite else { return XCTFail("tests.json is not an array") }
        var passedExpected = 0, passedError = 0
        for (i, record) in records.enumerated() {
            if record["disabled"] == .bool(true) { continue }
            guard let doc = record["doc"], let patchJSON = record["patch"] else { continue } // a note
            let label = "record \(i) \(record["comment"]?.stringValue ?? "")"
            if let expected = record["expected"] {
                do {
                    let patch = try JSONPatch(json: patchJSON)
                    let result = try patch.apply(to: doc)
                    XCTAssertEqual(result, expected, label)
                    passedExpected += 1
                } catch {
                    XCTFail("\(label): \(error)")
                }
            } else if record["error"] != nil {
                do {
                    let patch = try JSONPatch(json: patchJSON)
                    let result = try patch.apply(to: doc)
                    XCTFail("\(label): expected an error, got \(result)")
                } catch {
                    passedError += 1
                }
            }
        }
        XCTAssertGreaterThan(passedExpected, 50)
        XCTAssertGreaterThan(passedError, 20)
    }
}
