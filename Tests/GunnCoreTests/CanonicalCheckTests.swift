import Foundation
import XCTest
@testable import GunnCore

/// `CanonicalCheck` says yes exactly when parsing and writing canonically again gives the same
/// bytes: checked on the JCS suite, on hand-picked near misses, and on thousands of generated
/// documents and single-byte mutations of them (the JSON fuzzer checks the same on every input).
final class CanonicalCheckTests: XCTestCase {
    func roundTrips(_ bytes: [UInt8], _ options: JSONParseOptions = .default) -> Bool {
        guard let v = try? JSONParser.parse(bytes, options: options) else { return false }
        return CanonicalJSON.encode(v) == bytes
    }

    func assertAgrees(_ bytes: [UInt8], _ options: JSONParseOptions = .default, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(CanonicalCheck.isCanonical(bytes, options: options), roundTrips(bytes, options),
                       "disagree on \(String(decoding: bytes, as: UTF8.self).debugDescription)", file: file, line: line)
    }

    func testTheJCSSuiteOutputsAreCanonicalAndItsInputsAgree() throws {
        let folder = TestPaths.sharedTestdata.appendingPathComponent("jcs")
        let names = try FileManager.default.contentsOfDirectory(atPath: folder.appendingPathComponent("output").path).sorted()
        XCTAssertGreaterThanOrEqual(names.count, 5)
        for name in names {
            let output = [UInt8](try Data(contentsOf: folder.appendingPathComponent("output/\(name)")))
            XCTAssertTrue(CanonicalCheck.isCanonical(output), name)
            assertAgrees([UInt8](try Data(contentsOf: folder.appendingPathComponent("input/\(name)"))))
        }
    }

    func testNearMissesAreRefused() {
        let yes = [#"{"a":1,"b":[true,false,null],"c":"x"}"#, #"0"#, #"-1.5"#, #"1e+21"#, #"1e-7"#, #"0.000001"#, #""\u0000\u001f\b\t\n\f\r\"\\""#,
                   #"{"":0,"a":{}}"#, #"[]"#, #""é€😀""#, "\"\u{7f}\"", #"{"\u0001":1,"a":2}"#, #"123456789012345"#, #"9007199254740991"#]
        let no = [#"{"b":1,"a":2}"#, #"{"a":1,"a":1}"#, #"{ "a":1}"#, #"[1, 2]"#, #"-0"#, #"1.0"#, #"1E+21"#, #"1e21"#, #"01"#, #"1e2"#, #"100e0"#,
                  #""\u000a""#, #""\u001F""#, #""\/""#, #""\u0041""#, #""\ud83d\ude00""#, "\"\u{1}\"", #"tru"#, #"nul"#, #"[1,]"#, #"{"a":1,}"#,
                  #"1 "#, #" 1"#, #""#, #"{"a"}"#, #"[1]]"#, #"0.1e1"#, #"1.5e300000"#]
        for s in yes { XCTAssertTrue(CanonicalCheck.isCanonical(Array(s.utf8)), s); assertAgrees(Array(s.utf8)) }
        for s in no { XCTAssertFalse(CanonicalCheck.isCanonical(Array(s.utf8)), s); assertAgrees(Array(s.utf8)) }
        // Bytes no String can hold: invalid UTF-8, an encoded surrogate, an overlong form.
        for bad: [UInt8] in [[0x22, 0xff, 0x22], [0x22, 0xed, 0xa0, 0x80, 0x22], [0x22, 0xc0, 0xaf, 0x22], [0x22, 0xf4, 0x90, 0x80, 0x80, 0x22]] {
            XCTAssertFalse(CanonicalCheck.isCanonical(bad)); assertAgrees(bad)
        }
        // Depth: the parser's limit is the check's.
        let deep = Array(String(repeating: "[", count: 5) + String(repeating: "]", count: 5)).map { UInt8($0.asciiValue!) }
        assertAgrees(deep, JSONParseOptions(maxDepth: 4)); assertAgrees(deep, JSONParseOptions(maxDepth: 5))
        XCTAssertFalse(CanonicalCheck.isCanonical(deep, options: JSONParseOptions(maxDepth: 4)))
        XCTAssertTrue(CanonicalCheck.isCanonical(deep, options: JSONParseOptions(maxDepth: 5)))
    }

    func testGeneratedDocumentsAndTheirMutationsAgree() {
        var rng = SplitMix64(seed: 16)
        let atoms: [UInt8] = Array(#"{}[],:"\ 0123456789-+.eEtrufalsn/ub"#.utf8) + [0x7f, 0xc3, 0xa9, 0xe2, 0x82, 0xac, 0xed, 0xa0, 0x01, 0x0a]
        let strings = ["", "a", "b", "ab", "é", "\u{1}", "\n", "\"", "\\", "€", "😀", "\u{e000}", "z"]
        func value(_ depth: Int) -> JSONValue {
            switch rng.next(below: depth > 3 ? 4 : 6) {
            case 0: return .null
            case 1: return .bool(rng.next(below: 2) == 0)
            case 2:
                let choices: [Double] = [0, -0.0, 1, -1, 0.5, 1e21, 1e-7, 123.456, 9007199254740992, 1.5e-300, Double.leastNonzeroMagnitude, 1e300, Double(rng.next(below: 1000))]
                return .number(choices[Int(rng.next(below: UInt64(choices.count)))])
            case 3: return .string(strings[Int(rng.next(below: UInt64(strings.count)))])
            case 4: return .array((0..<rng.next(below: 4)).map { _ in value(depth + 1) })
            default:
                var o = JSONObject()
                for _ in 0..<rng.next(below: 5) { o[strings[Int(rng.next(below: UInt64(strings.count)))]] = value(depth + 1) }
                return .object(o)
            }
        }
        var canonicalSeen = 0, mutations = 0
        for _ in 0..<3000 {
            let doc = CanonicalJSON.encode(value(0))
            XCTAssertTrue(CanonicalCheck.isCanonical(doc), String(decoding: doc, as: UTF8.self))
            canonicalSeen += 1
            for _ in 0..<4 {
                var m = doc
                let at = Int(rng.next(below: UInt64(m.count + 1)))
                switch rng.next(below: 3) {
                case 0 where at < m.count: m.remove(at: at)
                case 1: m.insert(atoms[Int(rng.next(below: UInt64(atoms.count)))], at: at)
                default: if at < m.count { m[at] = atoms[Int(rng.next(below: UInt64(atoms.count)))] }
                }
                assertAgrees(m)
                mutations += 1
            }
        }
        XCTAssertEqual(canonicalSeen, 3000)
        XCTAssertEqual(mutations, 12000)
    }

    func testTopLevelMembersAreFound() throws {
        let effect = Effect(uuid: "u", kind: "Speak", payload: ["text": "hi \"there\"", "global_seq": 99], globalSeq: 42, simTime: 1.5, sourceID: "a")
        let bytes = effect.canonicalBytes
        let members = try XCTUnwrap(CanonicalCheck.check(bytes, keys: ["global_seq", "kind"]))
        XCTAssertEqual(members["global_seq"].flatMap { CanonicalCheck.integer(bytes[$0]) }, 42, "the payload's global_seq is not the top level's")
        XCTAssertEqual(members["kind"].flatMap { CanonicalCheck.string(bytes[$0]) }, "Speak")
        XCTAssertEqual(CanonicalCheck.string(Array(#""a\"b""#.utf8)[...]), "a\"b")
        // A kind that is not a string is no string (the log writer refuses the effect).
        for other in ["true", "null", "12", "[]", "{}", #"{"a":1}"#] {
            let doc = Array(#"{"global_seq":1,"kind":"#.utf8) + Array(other.utf8) + [UInt8(ascii: "}")]
            let m = try XCTUnwrap(CanonicalCheck.check(doc, keys: ["kind"]), other)
            XCTAssertNil(m["kind"].flatMap { CanonicalCheck.string(doc[$0]) }, other)
        }
    }
}
