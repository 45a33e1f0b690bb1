import Foundation
import GunnCore

/// Renders metric snapshots (`Metrics.snapshot()`, from one process or many) in the Prometheus
/// text exposition format 0.0.4. Every series gets a `process` label naming the process it came
/// from; a family that several processes report is written once (HELP and TYPE once, its series
/// from each process after them). A family whose type disagrees with the first process's is left
/// out, and so is anything that is not a well-formed snapshot: a process's bad answer never
/// breaks the exposition of the others.
public enum PrometheusText {
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    public static func render(_ snapshots: [JSONValue]) -> String {
        struct Merged { var help: String; var type: String; var lines: [String] }
        var families: [String: Merged] = [:]
        for snap in snapshots {
            guard case .string(let process)? = snap["process"], case .array(let fams)? = snap["families"] else { continue }
            for f in fams {
                guard case .string(let name)? = f["name"], Metrics.validName(name), case .string(let type)? = f["type"],
                      ["counter", "gauge", "histogram"].contains(type), case .array(let labelNames)? = f["labels"],
                      case .array(let series)? = f["series"] else { continue }
                let names = labelNames.compactMap(\.stringValue)
                guard names.count == labelNames.count, names.allSatisfy(Metrics.validName) else { continue }
                var merged = families[name] ?? Merged(help: f["help"]?.stringValue ?? "", type: type, lines: [])
                guard merged.type == type else { continue }
                for s in series {
                    guard case .array(let vs)? = s["labels"], vs.count == names.count else { continue }
                    let values = vs.compactMap(\.stringValue)
                    guard values.count == names.count else { continue }
                    let base = [("process", process)] + Array(zip(names, values))
                    if type == "histogram" {
                        guard case .array(let bs)? = s["buckets"], case .array(let cs)? = s["counts"], cs.count == bs.count + 1,
                              let sum = s["sum"]?.numberValue, let count = s["count"]?.numberValue else { continue }
                        for (b, c) in zip(bs + [.null], cs) {
                            let le = b.numberValue.map(number) ?? "+Inf"
                            merged.lines.append("\(name)_bucket\(labels(base + [("le", le)])) \(number(c.numberValue ?? 0))")
                        }
                        merged.lines.append("\(name)_sum\(labels(base)) \(number(sum))")
                        merged.lines.append("\(name)_count\(labels(base)) \(number(count))")
                    } else {
                        guard let v = s["value"]?.numberValue else { continue }
                        merged.lines.append("\(name)\(labels(base)) \(number(v))")
                    }
                }
                families[name] = merged
            }
        }
        var out = ""
        for name in families.keys.sorted() {
            let f = families[name]!
            out += "# HELP \(name) \(escapeHelp(f.help))\n# TYPE \(name) \(f.type)\n"
            for l in f.lines { out += l + "\n" }
        }
        return out
    }

    static func labels(_ pairs: [(String, String)]) -> String {
        "{" + pairs.map { "\($0.0)=\"\(escapeValue($0.1))\"" }.joined(separator: ",") + "}"
    }

    static func escapeValue(_ s: String) -> String {
        var o = ""
        for c in s.unicodeScalars {
            switch c {
            case "\\": o += "\\\\"
            case "\"": o += "\\\""
            case "\n": o += "\\n"
            default: o.unicodeScalars.append(c)
            }
        }
        return o
    }

    static func escapeHelp(_ s: String) -> String {
        s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\n", with: "\\n")
    }

    /// Integers without a fraction; `+Inf`, `-Inf`, `NaN` as Prometheus spells them.
    static func number(_ v: Double) -> String {
        if v.isNaN { return "NaN" }
        if v.isInfinite { return v > 0 ? "+Inf" : "-Inf" }
        if v == v.rounded(), abs(v) < 1e15 { return String(Int64(v)) }
        return "\(v)"
    }
}
