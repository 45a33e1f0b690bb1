/// A semantic version `MAJOR.MINOR.PATCH` as carried in `schema_version` fields.
public struct SchemaVersion: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let major: Int, minor: Int, patch: Int

    public init(_ major: Int, _ minor: Int, _ patch: Int) {
        self.major = major; self.minor = minor; self.patch = patch
    }

    /// Parses `M.m.p` with non-negative decimal parts and no leading zeros.
    public init(parsing text: String) throws(GunnError) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3,
              let a = Int(parts[0]), let b = Int(parts[1]), let c = Int(parts[2]),
              parts.allSatisfy({ $0.count == 1 || !$0.hasPrefix("0") }), a >= 0, b >= 0, c >= 0,
              parts.allSatisfy({ $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) })
        else { throw GunnError(.unsupportedSchemaVersion, "schema_version \"\(text)\" is not MAJOR.MINOR.PATCH") }
        self.init(a, b, c)
    }

    public var description: String { "\(major).\(minor).\(patch)" }

    public static func < (a: SchemaVersion, b: SchemaVersion) -> Bool {
        (a.major, a.minor, a.patch) < (b.major, b.minor, b.patch)
    }

    /// The version this build writes for every record type.
    public static let current = SchemaVersion(1, 1, 0)
    static let currentText = current.description

    /// Checks a record's version: another major is an error (UNSUPPORTED_SCHEMA_VERSION); an older
    /// minor of the same major is accepted with a deprecation warning; a newer minor is accepted
    /// (fields it adds are ignored), as semver promises.
    public static func check(_ text: String, record: String) throws(GunnError) -> String? {
        if text.utf8.elementsEqual(currentText.utf8) { return nil } // the common case, without parsing
        let v = try SchemaVersion(parsing: text)
        guard v.major == current.major else {
            throw GunnError(.unsupportedSchemaVersion, "\(record) schema_version \(v) has major \(v.major); this build reads major \(current.major) (writes \(current))")
        }
        if v.minor < current.minor {
            return "\(record) schema_version \(v) is deprecated; \(current) is current and \(v.major).\(v.minor) support will be removed in a future major"
        }
        return nil
    }
}
