import GunnCore
import Synchronization

/// One process's metrics: counters, gauges and histograms, each a family of series keyed by
/// label values. Recording takes one lock and touches one series; reading takes a `snapshot`
/// (a JSON value, the form that crosses the control socket) that `PrometheusText` renders.
///
/// Bounded: a family holds at most `maxSeries` label combinations; a new combination past that
/// is folded into one series whose label values are all `"_other"` (and counted in
/// `gunn_metrics_series_folded_total`), so a label fed by input can never grow a table.
public final class Metrics: Sendable {
    public enum Kind: String, Sendable { case counter, gauge, histogram }

    /// Latency buckets in seconds, 50 µs to 10 s.
    public static let latencyBuckets: [Double] = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                  0.1, 0.25, 0.5, 1, 2.5, 5, 10]
    public static let maxSeries = 256
    static let otherValue = "_other"

    struct Series {
        var value: Double = 0
        /// Histograms: per-bucket (not cumulative) counts, the last one +Inf.
        var counts: [UInt64] = []
        var sum: Double = 0
        var count: UInt64 = 0
    }

    struct Family {
        let name: String, help: String, kind: Kind, labels: [String], buckets: [Double]
        var series: [[String]: Series] = [:]
        /// Gauges read when a snapshot is taken (queue depths, RSS, breaker states).
        var collect: (@Sendable () -> [([String], Double)])?
    }

    struct State {
        var families: [Family] = []
        var index: [String: Int] = [:]
        var folded: UInt64 = 0
    }

    public let process: String
    private let state = Mutex(State())

    public init(process: String) { self.process = process }

    /// A handle to one family: recording through it skips the name lookup.
    public struct Handle: Sendable {
        let metrics: Metrics
        let slot: Int
        public func inc(_ labels: [String] = [], by v: Double = 1) { metrics.record(slot, labels) { $0.value += v } }
        public func set(_ labels: [String] = [], _ v: Double) { metrics.record(slot, labels) { $0.value = v } }
        public func observe(_ labels: [String] = [], _ v: Double) { metrics.observe(slot, labels, CollectionOfOne(v)) }
        /// Many observations under one lock.
        public func observe<S: Sequence>(_ labels: [String] = [], values: S) where S.Element == Double { metrics.observe(slot, labels, values) }
    }

    /// Declares a family (or returns the one declared under that name; the first declaration wins).
    /// Names and label names must match Prometheus's grammar; a bad one is a programming error.
    @discardableResult
    public func family(_ name: String, _ kind: Kind, help: String, labels: [String] = [], buckets: [Double] = Metrics.latencyBuckets,
                       collect: (@Sendable () -> [([String], Double)])? = nil) -> Handle {
        precondition(Self.validName(name) && labels.allSatisfy { Self.validName($0) && !$0.hasPrefix("__") && $0 != "process" },
                     "metric \(name) \(labels): not a Prometheus name")
        return state.withLock { s in
            if let i = s.index[name] { return Handle(metrics: self, slot: i) }
            s.families.append(Family(name: name, help: help, kind: kind, labels: labels, buckets: kind == .histogram ? buckets.sorted() : [],
                                     collect: collect))
            s.index[name] = s.families.count - 1
            return Handle(metrics: self, slot: s.families.count - 1)
        }
    }

    public func counter(_ name: String, help: String, labels: [String] = []) -> Handle { family(name, .counter, help: help, labels: labels) }
    public func gauge(_ name: String, help: String, labels: [String] = []) -> Handle { family(name, .gauge, help: help, labels: labels) }
    public func histogram(_ name: String, help: String, labels: [String] = [], buckets: [Double] = Metrics.latencyBuckets) -> Handle {
        family(name, .histogram, help: help, labels: labels, buckets: buckets)
    }
    /// A gauge whose series are read from `collect` at each snapshot (at most `maxSeries` of them).
    public func gauge(_ name: String, help: String, labels: [String] = [], collect: @escaping @Sendable () -> [([String], Double)]) {
        family(name, .gauge, help: help, labels: labels, collect: collect)
    }
    /// A counter kept elsewhere (a total that only grows), read from `collect` at each snapshot.
    public func counter(_ name: String, help: String, labels: [String] = [], collect: @escaping @Sendable () -> [([String], Double)]) {
        family(name, .counter, help: help, labels: labels, collect: collect)
    }

    /// The series key for `labels` in family `slot` (padded or cut to its label count; past the
    /// bound, the `_other` series). Reads the family in place: no copy of its table.
    private func key(_ slot: Int, _ labels: [String], _ s: inout State) -> [String] {
        let n = s.families[slot].labels.count
        var k = labels
        if k.count != n { k = Array((k + Array(repeating: "", count: n)).prefix(n)) }
        if s.families[slot].series.count >= Self.maxSeries && s.families[slot].series[k] == nil {
            s.folded += 1 // a recording that found no room (counted once per recording)
            return Array(repeating: Self.otherValue, count: n)
        }
        return k
    }

    func record(_ slot: Int, _ labels: [String], _ change: (inout Series) -> Void) {
        state.withLock { s in
            let k = key(slot, labels, &s)
            change(&s.families[slot].series[k, default: Series()])
        }
    }

    func observe<S: Sequence>(_ slot: Int, _ labels: [String], _ values: S) where S.Element == Double {
        state.withLock { s in
            let k = key(slot, labels, &s)
            let buckets = s.families[slot].buckets
            if s.families[slot].series[k] == nil { s.families[slot].series[k] = Series(counts: Array(repeating: 0, count: buckets.count + 1)) }
            for v in values {
                let i = buckets.firstIndex { v <= $0 } ?? buckets.count
                s.families[slot].series[k]!.counts[i] += 1
                s.families[slot].series[k]!.sum += v
                s.families[slot].series[k]!.count += 1
            }
        }
    }

    /// Everything recorded so far, as `{"process", "families": [...]}`; each family
    /// `{"name", "help", "type", "labels", "series": [{"labels", "value"} or {"labels", "buckets",
    /// "counts" (cumulative, the last +Inf), "sum", "count"}]}`, families and series in a stable order.
    public func snapshot() -> JSONValue {
        let (families, folded) = state.withLock { s in (s.families, s.folded) }
        var out: [JSONValue] = []
        for f in families {
            var series = f.series.map { ($0.key, $0.value) }
            if let collect = f.collect {
                for (labels, v) in collect().prefix(Self.maxSeries) where labels.count == f.labels.count { series.append((labels, Series(value: v))) }
            }
            series.sort { $0.0.lexicographicallyPrecedes($1.0) }
            let items: [JSONValue] = series.map { labels, s in
                var o: JSONObject = ["labels": .array(labels.map { .string($0) })]
                if f.kind == .histogram {
                    var running: UInt64 = 0
                    o["buckets"] = .array(f.buckets.map { .number($0) })
                    o["counts"] = .array(s.counts.map { running += $0; return .number(Double(running)) })
                    o["sum"] = .number(s.sum.isFinite ? s.sum : 0)
                    o["count"] = .number(Double(s.count))
                } else {
                    o["value"] = .number(s.value.isFinite ? s.value : 0) // JSON has no NaN or infinity
                }
                return .object(o)
            }
            out.append(["name": .string(f.name), "help": .string(f.help), "type": .string(f.kind.rawValue),
                        "labels": .array(f.labels.map { .string($0) }), "series": .array(items)])
        }
        out.append(["name": "gunn_metrics_series_folded_total", "type": "counter", "labels": [],
                    "help": "Label combinations past a family's bound, counted in its _other series",
                    "series": [["labels": [], "value": .number(Double(folded))]]])
        return ["process": .string(process), "families": .array(out)]
    }

    /// `[a-zA-Z_:][a-zA-Z0-9_:]*` (label names: no colon).
    static func validName(_ s: String) -> Bool {
        guard let first = s.utf8.first, !(48...57).contains(first) else { return false }
        return s.utf8.allSatisfy { ($0 >= 97 && $0 <= 122) || ($0 >= 65 && $0 <= 90) || ($0 >= 48 && $0 <= 57) || $0 == 95 || $0 == 58 }
    }
}
