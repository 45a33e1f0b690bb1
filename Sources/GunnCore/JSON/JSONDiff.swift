/// Computes an RFC 6902 patch that turns one document into another. Object members are
/// addressed by key (sorted, so the patch is deterministic); arrays by index after trimming their
/// common prefix and suffix. Above `maxOps` operations the patch is one whole-document `replace`.
public enum JSONDiff {
    public static let defaultMaxOps = 64

    public static func diff(_ old: JSONValue, _ new: JSONValue, maxOps: Int = defaultMaxOps) -> JSONPatch {
        var ops: [PatchOperation] = []
        guard appendDiff(old, new, at: [], maxOps: maxOps, into: &ops) else { return JSONPatch([.replace(path: .root, value: new)]) }
        return JSONPatch(ops)
    }

    /// Appends the operations turning `old` into `new`, both located at `path` in a larger
    /// document, to `ops`. Returns false (with `ops` partly extended) when `ops` would exceed `maxOps`.
    static func appendDiff(_ old: JSONValue, _ new: JSONValue, at path: [String], maxOps: Int, into ops: inout [PatchOperation]) -> Bool {
        var builder = Builder(maxOps: maxOps)
        builder.walk(old, new, path, into: &ops)
        return !builder.overflowed
    }

    /// True when `patch` is the single whole-document replace that `diff` falls back to.
    public static func isWholeReplace(_ patch: JSONPatch) -> Bool {
        if patch.operations.count == 1, case .replace(let path, _) = patch.operations[0], path.tokens.isEmpty { return true }
        return false
    }

    private struct Builder {
        let maxOps: Int
        var overflowed = false

        init(maxOps: Int) { self.maxOps = maxOps }

        mutating func emit(_ op: PatchOperation, into ops: inout [PatchOperation]) {
            if ops.count >= maxOps { overflowed = true; return }
            ops.append(op)
        }

        mutating func walk(_ old: JSONValue, _ new: JSONValue, _ path: [String], into ops: inout [PatchOperation]) {
            if overflowed { return }
            switch (old, new) {
            case let (.object(a), .object(b)):
                // Find what differs in dictionary order (no output depends on it), then emit in
                // key order: removals first, then additions and changes. Only the differing keys
                // are sorted, so one changed member of a large object costs one pass, not a sort.
                var removed: [JSONKey] = [], changed: [JSONKey] = []
                for key in a.storage.keys where b.storage[key] == nil { removed.append(key) }
                for (key, newValue) in b.storage {
                    if let oldValue = a.storage[key] {
                        if oldValue != newValue { changed.append(key) }
                    } else {
                        changed.append(key)
                    }
                }
                for key in removed.sorted() {
                    emit(.remove(path: JSONPointer(tokens: path + [key.string])), into: &ops)
                    if overflowed { return }
                }
                for key in changed.sorted() {
                    let newValue = b.storage[key]!
                    if let oldValue = a.storage[key] {
                        walk(oldValue, newValue, path + [key.string], into: &ops)
                    } else {
                        emit(.add(path: JSONPointer(tokens: path + [key.string]), value: newValue), into: &ops)
                    }
                    if overflowed { return }
                }
            case let (.array(a), .array(b)):
                var prefix = 0
                while prefix < a.count && prefix < b.count && a[prefix] == b[prefix] { prefix += 1 }
                var suffix = 0
                while suffix < a.count - prefix && suffix < b.count - prefix && a[a.count - 1 - suffix] == b[b.count - 1 - suffix] { suffix += 1 }
                let oldMiddle = a.count - prefix - suffix
                let newMiddle = b.count - prefix - suffix
                let common = min(oldMiddle, newMiddle)
                for i in 0..<common {
                    walk(a[prefix + i], b[prefix + i], path + [String(prefix + i)], into: &ops)
                    if overflowed { return }
                }
                if oldMiddle > newMiddle {
                    // Highest index first, so the indices still to remove do not shift.
                    for i in stride(from: prefix + oldMiddle - 1, through: prefix + common, by: -1) {
                        emit(.remove(path: JSONPointer(tokens: path + [String(i)])), into: &ops)
                        if overflowed { return }
                    }
                } else if newMiddle > oldMiddle {
                    for i in (prefix + common)..<(prefix + newMiddle) {
                        emit(.add(path: JSONPointer(tokens: path + [String(i)]), value: b[i]), into: &ops)
                        if overflowed { return }
                    }
                }
            default:
                if old != new { emit(.replace(path: JSONPointer(tokens: path), value: new), into: &ops) }
            }
        }
    }
}
