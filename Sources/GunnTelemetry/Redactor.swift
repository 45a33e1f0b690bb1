/// Removes secrets and personal data from a log line before it is written (docs/telemetry.md).
/// Every rule runs over the whole line, whatever its shape: JSON, `key=value`, a URL, an HTTP
/// header. A match is replaced with a marker that names what was there (`[REDACTED:email]`), so a
/// reader knows something was removed and what kind it was.
///
/// What counts:
/// - bearer credentials (`Bearer …`, `Basic …`) and whole `Authorization` / `Proxy-Authorization`
///   / `Cookie` / `X-API-Key` header values;
/// - gunn tokens (`gunn1.<claims>.<mac>`), JWTs, and API keys in the shapes providers give them
///   (`sk-…`, `AKIA…`, `ghp_…`, `xox…-`);
/// - the values of secret-named keys in JSON (`"password": "…"`) and in queries or assignments
///   (`?access_token=…`, `api_key=…`);
/// - email addresses;
/// - phone numbers written as phone numbers: with a leading `+`, or in groups with separators
///   (`(555) 123-4567`, `555-123-4567`). A plain run of digits is a number (a seq, a time), and it
///   is kept.
public struct Redactor: Sendable {
    public init() {}

    /// Keys whose value is a secret wherever they appear (compared without case, `-` and `_`).
    public static let secretKeys: Set<String> = [
        "authorization", "proxyauthorization", "cookie", "setcookie", "xapikey", "apikey", "accesstoken", "refreshtoken",
        "idtoken", "token", "secret", "clientsecret", "password", "passwd", "privatekey", "sessiontoken", "bearer",
    ]

    static func normalize(_ key: Substring) -> String {
        String(key.lowercased().filter { $0 != "-" && $0 != "_" })
    }

    public func redact(_ line: String) -> String {
        var s = line
        s = redactJSONValues(s)
        s = redactHeaders(s)
        s = redactAssignments(s)
        s = replace(s, Self.p.credential) { m in "\(m.1) [REDACTED:credential]" }
        s = replace(s, Self.p.gunnToken) { _ in "[REDACTED:token]" }
        s = replace(s, Self.p.jwt) { _ in "[REDACTED:token]" }
        s = replace(s, Self.p.apiKey) { _ in "[REDACTED:api_key]" }
        s = replace(s, Self.p.email) { _ in "[REDACTED:email]" }
        s = replace(s, Self.p.phone) { m in "\(m.1)[REDACTED:phone]" }
        return s
    }

    // MARK: - Rules

    /// The rules' patterns, compiled once.
    struct Patterns {
        let jsonPair = #/"([A-Za-z0-9_\-]{1,64})"\s*:\s*"((?:[^"\\]|\\.)*)"/#
        let header = #/(?i)\b(authorization|proxy-authorization|cookie|set-cookie|x-api-key)(\s*:\s*)([^"\r\n,}]+)/#
        let assignment = #/(?i)([?&;\s,{(]|^)([A-Za-z_\-]{1,32})=([^&\s"',;})]+)/#
        let credential = #/(?i)\b(bearer|basic)\s+(?=[^\s"]*[0-9._~+\/=\-])([A-Za-z0-9\-._~+\/]{8,}=*)/#
        let gunnToken = #/gunn1\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+/#
        let jwt = #/eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}/#
        let apiKey = #/\b(?:sk-(?:proj-)?[A-Za-z0-9_\-]{16,}|AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{30,}|xox[abprs]-[A-Za-z0-9\-]{10,})/#
        let email = #/[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9\-]{1,63}(?:\.[A-Za-z0-9\-]{1,63})*\.[A-Za-z]{2,24}/#
        let phone = #/(^|[^\w+.\-])(\+\d{1,3}[\s.\-]?(?:\(\d{1,4}\)[\s.\-]?)?\d{2,4}(?:[\s.\-]?\d{2,4}){1,3}|\(\d{3}\)\s?\d{3}[\s.\-]\d{4}|\d{3}[.\-]\d{3}[.\-]\d{4})(?!\w)/#
    }

    // `nonisolated(unsafe)` is safe: the patterns are immutable `let`s built once, and matching
    // only reads a Regex (each match works on its own copy of the program's state).
    nonisolated(unsafe) static let p = Patterns()

    /// `"key": "value"` where the key names a secret: the value goes.
    func redactJSONValues(_ s: String) -> String {
        replace(s, Self.p.jsonPair) { m in
            Self.secretKeys.contains(Self.normalize(m.1)) ? "\"\(m.1)\":\"[REDACTED]\"" : String(m.0)
        }
    }

    /// `Authorization: …` (and the other credential headers) up to the end of the value.
    func redactHeaders(_ s: String) -> String {
        replace(s, Self.p.header) { m in "\(m.1)\(m.2)[REDACTED]" }
    }

    /// `key=value` in a query, a form or a message, where the key names a secret.
    func redactAssignments(_ s: String) -> String {
        replace(s, Self.p.assignment) { m in
            Self.secretKeys.contains(Self.normalize(m.2)) ? "\(m.1)\(m.2)=[REDACTED]" : String(m.0)
        }
    }

    func replace<Output>(_ s: String, _ regex: Regex<Output>, _ with: (Output) -> String) -> String {
        var out = ""
        var rest = s[...]
        while let m = rest.firstMatch(of: regex) {
            out += rest[rest.startIndex..<m.range.lowerBound]
            out += with(m.output)
            if m.range.isEmpty {
                guard m.range.upperBound < rest.endIndex else { rest = rest[rest.endIndex...]; break }
                out.append(rest[m.range.upperBound])
                rest = rest[rest.index(after: m.range.upperBound)...]
            } else {
                rest = rest[m.range.upperBound...]
            }
        }
        return out + rest
    }
}
