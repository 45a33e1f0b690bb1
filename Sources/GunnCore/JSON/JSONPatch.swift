/// One RFC 6902 operation.
public enum PatchOperation: Hashable, Sendable {
    case add(path: JSONPointer, value: JSONValue)
    case remove(path: JSONPointer)
    case replace(path: JSONPointer, value: JSONValue)
    case move(from: JSONPointer, path: JSONPointer)
    case copy(from: JSONPointer, path: JSONPointer)
    case test(path: JSONPointer, value: JSONValue)

    /// The operation as the JSON object RFC 6902 defines.
    public var json: JSONValue {
        var o = JSONObject()
        switch self {
        case let .add(path, value): o["op"] = "add"; o["path"] = .string(path.description); o["value"] = value
        case let .remove(path): o["op"] = "remove"; o["path"] = .string(path.description)
        case let .replace(path, value): o["op"] = "replace"; o["path"] = .string(path.description); o["value"] = value
        case let .move(from, path): o["op"] = "move"; o["from"] = .string(from.description); o["path"] = .string(path.description)
        case let .copy(from, path): o["op"] = "copy"; o["from"] = .string(from.description); o["path"] = .string(path.description)
        case let .test(path, value): o["op"] = "test"; o["path"] = .string(path.description); o["value"] = value
        }
        return .object(o)
    }
}

/// Why a patch could not be read or applied. `operationIndex` names the failing operation.
public struct JSONPatchError: Error, Equatable, Sendable, CustomStringConvertible {
    public let operationIndex: Int?
    public let message: String

    public var description: String {
        if let operationIndex { return "JSON patch operation \(operationIndex): \(message)" }
        return "JSON patch: \(message)"
    }
}

/// An RFC 6902 JSON Patch: a list of operations applied in order, all or nothing.
public struct JSONPatch: Hashable, Sendable {
    public var operations: [PatchOperation]

    public init(_ operations: [PatchOperation]) { self.operations = operations }

    /// Reads a patch document (a JSON array of operation objects), refusing unknown ops, missing
    /// members, members of the wrong type and invalid pointers.
    public init(json: JSONValue) throws(JSONPatchError) {
        guard case .array(let items) = json else { throw JSONPatchError(operationIndex: nil, message: "a patch must be an array, got \(json.typeName)") }
        var ops: [PatchOperation] = []
        ops.reserveCapacity(items.count)
        for (i, item) in items.enumerated() {
            guard case .object(let o) = item else { throw JSONPatchError(operationIndex: i, message: "an operation must be an object") }
            func pointer(_ member: String) throws(JSONPatchError) -> JSONPointer {
                guard let v = o[member] else { throw JSONPatchError(operationIndex: i, message: "missing '\(member)'") }
                guard case .string(let s) = v else { throw JSONPatchError(operationIndex: i, message: "'\(member)' must be a string") }
                do { return try JSONPointer(s) } catch { throw JSONPatchError(operationIndex: i, message: error.description) }
            }
            func value() throws(JSONPatchError) -> JSONValue {
                guard let v = o["value"] else { throw JSONPatchError(operationIndex: i, message: "missing 'value'") }
                return v
            }
            guard case .string(let op)? = o["op"] else { throw JSONPatchError(operationIndex: i, message: "missing or non-string 'op'") }
            switch op {
            case "add": ops.append(.add(path: try pointer("path"), value: try value()))
            case "remove": ops.append(.remove(path: try pointer("path")))
            case "replace": ops.append(.replace(path: try pointer("path"), value: try value()))
            case "move": ops.append(.move(from: try pointer("from"), path: try pointer("path")))
            case "copy": ops.append(.copy(from: try pointer("from"), path: try pointer("path")))
            case "test": ops.append(.test(path: try pointer("path"), value: try value()))
            default: throw JSONPatchError(operationIndex: i, message: "unknown op \"\(op)\"")
            }
        }
        self.operations = ops
    }

    /// The patch as a JSON array.
    public var json: JSONValue { .array(operations.map(\.json)) }

    /// Applies every operation in order to a copy of `document` and returns it; if any operation
    /// fails, throws and `document` is as it was (the caller's value is never touched).
    public func apply(to document: JSONValue) throws(JSONPatchError) -> JSONValue {
        var doc = document
        for (i, op) in operations.enumerated() {
            do {
                try JSONPatch.applyOne(op, to: &doc)
            } catch {
                throw JSONPatchError(operationIndex: i, message: error.message)
            }
        }
        return doc
    }

    /// Applies the operations to `document` in place, without the copy that makes `apply(to:)`
    /// atomic: if an operation fails, the earlier ones stay applied. Only for patches known to
    /// apply, such as the engine's own deltas to the view they were computed from.
    public func applyInPlace(to document: inout JSONValue) throws(JSONPatchError) {
        for (i, op) in operations.enumerated() {
            do { try JSONPatch.applyOne(op, to: &document) } catch { throw JSONPatchError(operationIndex: i, message: error.message) }
        }
    }

    private static func applyOne(_ op: PatchOperation, to doc: inout JSONValue) throws(JSONPatchError) {
        switch op {
        case let .add(path, value):
            try add(value, at: path, in: &doc)
        case let .remove(path):
            _ = try remove(at: path, in: &doc)
        case let .replace(path, value):
            guard let parentPath = path.parent else { doc = value; return }
            try doc.modify(parentPath.tokens[...], path) { (parent) throws(JSONPatchError) in
                let last = path.tokens.last!
                switch parent {
                case .object(var o):
                    let key = JSONKey(last)
                    guard o.storage[key] != nil else { throw failure("no member \"\(last)\" to replace at \(path)") }
                    parent = .null
                    o.storage[key] = value
                    parent = .object(o)
                case .array(var a):
                    guard let i = JSONPointer.arrayIndex(last), i < a.count else { throw failure("no element \"\(last)\" to replace at \(path)") }
                    parent = .null
                    a[i] = value
                    parent = .array(a)
                default:
                    throw failure("cannot replace inside a \(parent.typeName) at \(path)")
                }
            }
        case let .move(from, path):
            if from == path { guard from.resolve(in: doc) != nil else { throw failure("nothing at \(from) to move") }; return }
            guard !path.hasPrefix(from) else { throw failure("cannot move \(from) into its own child \(path)") }
            let value = try remove(at: from, in: &doc)
            try add(value, at: path, in: &doc)
        case let .copy(from, path):
            guard let value = from.resolve(in: doc) else { throw failure("nothing at \(from) to copy") }
            try add(value, at: path, in: &doc)
        case let .test(path, value):
            guard let actual = path.resolve(in: doc) else { throw failure("nothing at \(path) to test") }
            guard actual == value else { throw failure("test failed at \(path)") }
        }
    }

    private static func failure(_ message: String) -> JSONPatchError { JSONPatchError(operationIndex: nil, message: message) }

    private static func add(_ value: JSONValue, at path: JSONPointer, in doc: inout JSONValue) throws(JSONPatchError) {
        guard let parentPath = path.parent else { doc = value; return }
        let last = path.tokens.last!
        try doc.modify(parentPath.tokens[...], path) { (parent) throws(JSONPatchError) in
            switch parent {
            case .object(var o):
                parent = .null
                o.storage[JSONKey(last)] = value
                parent = .object(o)
            case .array(var a):
                let index: Int
                if last == "-" { index = a.count } else {
                    guard let i = JSONPointer.arrayIndex(last), i <= a.count else { throw failure("index \"\(last)\" out of bounds for add at \(path)") }
                    index = i
                }
                parent = .null
                a.insert(value, at: index)
                parent = .array(a)
            default:
                throw failure("cannot add inside a \(parent.typeName) at \(path)")
            }
        }
    }

    private static func remove(at path: JSONPointer, in doc: inout JSONValue) throws(JSONPatchError) -> JSONValue {
        guard let parentPath = path.parent else { throw failure("cannot remove the whole document") }
        let last = path.tokens.last!
        return try doc.modify(parentPath.tokens[...], path) { (parent) throws(JSONPatchError) -> JSONValue in
            switch parent {
            case .object(var o):
                parent = .null
                defer { parent = .object(o) }
                guard let old = o.storage.removeValue(forKey: JSONKey(last)) else { throw failure("no member \"\(last)\" to remove at \(path)") }
                return old
            case .array(var a):
                guard let i = JSONPointer.arrayIndex(last), i < a.count else { throw failure("no element \"\(last)\" to remove at \(path)") }
                parent = .null
                let old = a.remove(at: i)
                parent = .array(a)
                return old
            default:
                throw failure("cannot remove inside a \(parent.typeName) at \(path)")
            }
        }
    }
}

extension JSONValue {
    /// Runs `body` on the value at `tokens`, in place: each container on the way is taken out of
    /// its enum case while it is changed so that it stays uniquely referenced (no copy).
    mutating func modify<R>(_ tokens: ArraySlice<String>, _ fullPath: JSONPointer,
                            _ body: (inout JSONValue) throws(JSONPatchError) -> R) throws(JSONPatchError) -> R {
        guard let first = tokens.first else { return try body(&self) }
        let rest = tokens.dropFirst()
        switch self {
        case .object(var o):
            let key = JSONKey(first)
            guard o.storage[key] != nil else { throw JSONPatchError(operationIndex: nil, message: "no member \"\(first)\" on the way to \(fullPath)") }
            self = .null
            defer { self = .object(o) }
            return try o.storage[key]!.modify(rest, fullPath, body)
        case .array(var a):
            guard let i = JSONPointer.arrayIndex(first), i < a.count else {
                throw JSONPatchError(operationIndex: nil, message: "no element \"\(first)\" on the way to \(fullPath)")
            }
            self = .null
            defer { self = .array(a) }
            return try a[i].modify(rest, fullPath, body)
        default:
            throw JSONPatchError(operationIndex: nil, message: "a \(typeName) has no member \"\(first)\" on the way to \(fullPath)")
        }
    }
}
