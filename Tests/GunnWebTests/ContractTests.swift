import Foundation
import XCTest
import GunnAuth
import GunnClient
import GunnCore
import GunnIO
@testable import GunnWeb

/// The contract check: the served OpenAPI document and proto/ against golden copies kept in
/// Tests/Golden, one per major version (openapi-v1.json, gunn-v1.proto). A change that removes a
/// path, an operation, a schema property or a message field, changes a type, renumbers a field or
/// makes a new field required is breaking: it fails here unless the major version is bumped (which
/// needs a new golden file for the new major; the old one stays as history). Additions pass.
final class ContractTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// One loop for the process (a loop must outlive its thread, so it is never released; the
    /// machine refusing a thread or an eventfd is no input of the test).
    // A loop that cannot be created is a broken test machine, not input.
    static let loop: EventLoop = try! EventLoop(name: "contract")

    static func servedDocument() throws -> JSONValue {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("gunn-contract-\(UUID().uuidString.prefix(8))").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // The client never connects: the document is made from the operation table alone.
        let adapter = WebAdapter(config: WebConfig(worldID: "w"), client: GunnClient(path: dir + "/none.sock", loop: loop),
                                 auth: try Authenticator(store: TokenStore(dataDir: dir), world: "w"))
        return adapter.openAPI(adapter.operations())
    }

    /// What `golden` has that `current` lacks or changed, as sentences.
    static func openAPIBreaks(golden: JSONValue, current: JSONValue) -> [String] {
        var breaks: [String] = []
        for (path, item) in golden["paths"]?.objectValue ?? JSONObject() {
            for (method, op) in item.objectValue ?? JSONObject() {
                guard let now = current["paths"]?[path]?[method] else { breaks.append("\(method.uppercased()) \(path) was removed"); continue }
                if op["operationId"] != now["operationId"] { breaks.append("\(method.uppercased()) \(path) changed its operationId") }
                let before = Set(op["parameters"]?.arrayValue?.compactMap { $0["required"] == true ? $0["name"]?.stringValue : nil } ?? [])
                let after = Set(now["parameters"]?.arrayValue?.compactMap { $0["required"] == true ? $0["name"]?.stringValue : nil } ?? [])
                for p in after.subtracting(before) { breaks.append("\(method.uppercased()) \(path) requires the new parameter \(p)") }
            }
        }
        let gs = golden["components"]?["schemas"]?.objectValue ?? JSONObject()
        let cs = current["components"]?["schemas"]?.objectValue ?? JSONObject()
        for (name, schema) in gs {
            guard let now = cs[name] else { breaks.append("schema \(name) was removed"); continue }
            for (prop, def) in schema["properties"]?.objectValue ?? JSONObject() {
                guard let nowDef = now["properties"]?[prop] else { breaks.append("\(name).\(prop) was removed"); continue }
                for key in ["type", "enum", "const", "$ref"] where def[key] != nowDef[key] {
                    breaks.append("\(name).\(prop) changed its \(key)")
                }
            }
            let req0 = Set(schema["required"]?.arrayValue?.compactMap(\.stringValue) ?? [])
            let req1 = Set(now["required"]?.arrayValue?.compactMap(\.stringValue) ?? [])
            for r in req1.subtracting(req0) { breaks.append("\(name).\(r) became required") }
        }
        return breaks
    }

    /// Messages (and enums) of a .proto file: name → field name → (number, type).
    static func protoFields(_ text: String) -> [String: [String: (Int, String)]] {
        var out: [String: [String: (Int, String)]] = [:]
        var stack: [(String, Bool)] = []  // (name, counts as a message/enum scope) for each open brace
        // Constant patterns: a failure to compile them is a bug in this file, not an input.
        // Constant patterns: a failure here is a typo in this file, caught by the first run.
        let fieldRE = try! NSRegularExpression(pattern: #"^\s*(?:repeated\s+|optional\s+)?([A-Za-z_][\w.]*)\s+([A-Za-z_]\w*)\s*=\s*(\d+)"#)
        let enumValueRE = try! NSRegularExpression(pattern: #"^\s*([A-Z_][A-Z0-9_]*)\s*=\s*(\d+)"#)
        for raw in text.components(separatedBy: "\n") {
            let line = raw.components(separatedBy: "//")[0]
            for part in line.components(separatedBy: ";") {
                let t = part.trimmingCharacters(in: .whitespaces)
                if let m = t.range(of: #"^(message|enum|oneof)\s+(\w+)\s*\{"#, options: .regularExpression) {
                    let words = t[m].split(whereSeparator: { $0 == " " || $0 == "{" })
                    let kind = String(words[0]), name = String(words[1])
                    // A oneof's fields belong to the message around it.
                    stack.append((kind == "oneof" ? (stack.last?.0 ?? name) : (stack.last.map { $0.0 + "." } ?? "") + name, true))
                    let rest = String(t[m.upperBound...])
                    if !rest.isEmpty { record(rest) }
                    if rest.contains("}") { stack.removeLast() }
                    continue
                }
                record(t)
                for _ in t.filter({ $0 == "}" }) where !stack.isEmpty { stack.removeLast() }
            }
        }
        func record(_ t: String) {
            guard let scope = stack.last?.0 else { return }
            let ns = t as NSString
            if let f = fieldRE.firstMatch(in: t, range: NSRange(location: 0, length: ns.length)), f.numberOfRanges == 4 {
                out[scope, default: [:]][ns.substring(with: f.range(at: 2))] = (Int(ns.substring(with: f.range(at: 3)))!, ns.substring(with: f.range(at: 1)))
            } else if let e = enumValueRE.firstMatch(in: t, range: NSRange(location: 0, length: ns.length)) {
                out[scope, default: [:]][ns.substring(with: e.range(at: 1))] = (Int(ns.substring(with: e.range(at: 2)))!, "enum")
            }
        }
        return out
    }

    static func protoBreaks(golden: String, current: String) -> [String] {
        let g = protoFields(golden), c = protoFields(current)
        var breaks: [String] = []
        for (message, fields) in g {
            guard let now = c[message] else { breaks.append("message \(message) was removed"); continue }
            for (name, (number, type)) in fields {
                guard let (n, t) = now[name] else { breaks.append("\(message).\(name) (\(number)) was removed"); continue }
                if n != number { breaks.append("\(message).\(name) was renumbered \(number) → \(n)") }
                if t != type { breaks.append("\(message).\(name) changed its type \(type) → \(t)") }
            }
            let numbers = Dictionary(fields.map { ($0.value.0, $0.key) }, uniquingKeysWith: { a, _ in a })
            for (name, (n, _)) in now where fields[name] == nil {
                if let old = numbers[n] { breaks.append("\(message): number \(n) of \(old) is reused by \(name)") }
            }
        }
        return breaks
    }

    func testTheServedOpenAPIDocumentKeepsTheContractOfItsMajorVersion() throws {
        let current = try Self.servedDocument()
        let version = current["info"]?["version"]?.stringValue ?? ""
        let major = version.split(separator: ".").first.map(String.init) ?? ""
        let path = Self.root.appendingPathComponent("Tests/Golden/openapi-v\(major).json").path
        guard let data = FileManager.default.contents(atPath: path) else {
            return XCTFail("no golden document for major version \(major): add \(path) (the served document, canonical JSON)")
        }
        let golden = try JSONParser.parse([UInt8](data))
        XCTAssertEqual(golden["info"]?["version"]?.stringValue?.split(separator: ".").first.map(String.init), major)
        let breaks = Self.openAPIBreaks(golden: golden, current: current)
        XCTAssertEqual(breaks, [], "breaking changes to API \(version) need a major version bump (APIVersion.current) and a new golden file")
        // The golden is the current document, or the current document only adds to it.
        XCTAssertEqual(Self.openAPIBreaks(golden: current, current: current), [])
    }

    func testProtoKeepsTheContractOfItsMajorVersion() throws {
        let current = try String(contentsOf: Self.root.appendingPathComponent("proto/gunn/v1/gunn.proto"), encoding: .utf8)
        let golden = try String(contentsOf: Self.root.appendingPathComponent("Tests/Golden/gunn-v1.proto"), encoding: .utf8)
        XCTAssertGreaterThan(Self.protoFields(golden).count, 30, "the golden proto parses into its messages")
        XCTAssertEqual(Self.protoBreaks(golden: golden, current: current), [],
                       "breaking changes to gunn.proto need protocol major 2 (proto/gunn/v2, ProtocolVersion.major) and a new golden file")
    }

    /// The checks themselves catch what they promise to.
    func testTheCheckersSeeRemovalsRenumberingsTypeChangesAndNewRequiredFields() throws {
        let doc = try Self.servedDocument()
        var paths = doc["paths"]!.objectValue!
        paths["/v1/effects"] = nil
        var broken = doc.objectValue!
        broken["paths"] = .object(paths)
        var schemas = doc["components"]!["schemas"]!.objectValue!
        var intent = schemas["Intent"]!.objectValue!
        var props = intent["properties"]!.objectValue!
        props["priority"] = ["type": "string"]
        props["req_id"] = nil
        intent["properties"] = .object(props)
        intent["required"] = ["kind", "payload"]
        schemas["Intent"] = .object(intent)
        broken["components"] = ["schemas": .object(schemas)]
        XCTAssertEqual(Set(Self.openAPIBreaks(golden: doc, current: .object(broken))),
                       ["POST /v1/effects was removed", "Intent.priority changed its type", "Intent.req_id was removed", "Intent.payload became required"])
        let proto = "message A {\n  uint64 x = 1;\n  string y = 2;\n  oneof body { B b = 3; }\n}\nenum E { E_ZERO = 0; E_ONE = 1; }\n"
        let changed = "message A {\n  uint32 x = 1;\n  string z = 2;\n  oneof body { B b = 4; }\n}\nenum E { E_ZERO = 0; }\n"
        XCTAssertEqual(Set(Self.protoBreaks(golden: proto, current: changed)),
                       ["A.x changed its type uint64 → uint32", "A.y (2) was removed", "A: number 2 of y is reused by z", "A.b was renumbered 3 → 4", "E.E_ONE (1) was removed"])
        XCTAssertEqual(Self.protoBreaks(golden: proto, current: proto + "message C { bool c = 1; }\n"), [], "additions are not breaking")
    }
}
