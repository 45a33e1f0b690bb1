import Foundation
import GunnCore

/// `gunn-bench json`: parse and canonical-serialize throughput on a 10,000-entity world document,
/// beside Foundation's JSONSerialization on the same bytes, and diff+apply for one entity moving.
enum JSONBench {
    struct Figures: Codable {
        var documentBytes: Int
        var gunnParseMBps: Double
        var foundationParseMBps: Double
        var gunnCanonicalSerializeMBps: Double
        var foundationSortedSerializeMBps: Double
        var diffOneMoveMicros: Double
        var applyOneMoveMicros: Double
        var diffOps: Int
    }

    static func worldDocument(entities: Int, seed: UInt64) -> JSONValue {
        var rng = SplitMix64(seed: seed)
        var members = JSONObject()
        for i in 0..<entities {
            let id = "e\(String(i).leftPadded(to: 5))"
            members[id] = [
                "id": .string(id),
                "kind": .string(["agent", "item", "wall", "npc"][Int(rng.next(below: 4))]),
                "pos": [.number(Double(rng.next(below: 100_000)) / 100), .number(Double(rng.next(below: 100_000)) / 100)],
                "hp": .number(Double(rng.next(below: 100))),
                "name": .string("Entity number \(i) — ünïcode"),
                "tags": ["visible", .string("team-\(rng.next(below: 8))")],
                "inventory": ["gold": .number(Double(rng.next(below: 1000))), "keys": .bool(rng.next(below: 2) == 1)],
            ]
        }
        return ["entities": .object(members), "metadata": ["world_id": "bench", "tick": 12345, "seed": .number(Double(seed))]]
    }

    static func run(arguments: [String]) -> Figures {
        let entityCount = 10_000
        let doc = worldDocument(entities: entityCount, seed: 42)
        let bytes = CanonicalJSON.encode(doc)
        let data = Data(bytes)
        let mb = Double(bytes.count) / 1_000_000
        print("json: world document of \(entityCount) entities, \(bytes.count) bytes canonical")

        let rounds = 8
        let gunnParse = measure(rounds) { _ = try! JSONParser.parse(bytes) }
        let foundationParse = measure(rounds) { _ = try! JSONSerialization.jsonObject(with: data) }
        let gunnSerialize = measure(rounds) { _ = CanonicalJSON.encode(doc) }
        let foundationObject = try! JSONSerialization.jsonObject(with: data)
        let foundationSerialize = measure(rounds) { _ = try! JSONSerialization.data(withJSONObject: foundationObject, options: [.sortedKeys]) }

        // One entity moves: diff the two world documents, then apply the patch.
        var moved = doc
        if case .object(var root) = moved, case .object(var ents)? = root["entities"], case .object(var e)? = ents["e04242"] {
            e["pos"] = [1.5, 2.5]
            ents["e04242"] = .object(e)
            root["entities"] = .object(ents)
            moved = .object(root)
        }
        var patch = JSONDiff.diff(doc, moved)
        let diffTime = measure(20) { patch = JSONDiff.diff(doc, moved) }
        let applyTime = measure(20) { _ = try! patch.apply(to: doc) }
        precondition(try! patch.apply(to: doc) == moved)

        let f = Figures(
            documentBytes: bytes.count,
            gunnParseMBps: mb / gunnParse, foundationParseMBps: mb / foundationParse,
            gunnCanonicalSerializeMBps: mb / gunnSerialize, foundationSortedSerializeMBps: mb / foundationSerialize,
            diffOneMoveMicros: diffTime * 1e6, applyOneMoveMicros: applyTime * 1e6, diffOps: patch.operations.count)
        print(String(format: "  parse       gunn %8.1f MB/s   Foundation JSONSerialization %8.1f MB/s   ratio %.2fx",
                     f.gunnParseMBps, f.foundationParseMBps, f.gunnParseMBps / f.foundationParseMBps))
        print(String(format: "  serialize   gunn %8.1f MB/s   Foundation (sortedKeys)      %8.1f MB/s   ratio %.2fx  (gunn's is RFC 8785 canonical)",
                     f.gunnCanonicalSerializeMBps, f.foundationSortedSerializeMBps, f.gunnCanonicalSerializeMBps / f.foundationSortedSerializeMBps))
        print(String(format: "  one entity moves: diff %.1f us (%d op), apply %.1f us", f.diffOneMoveMicros, f.diffOps, f.applyOneMoveMicros))
        return f
    }

    /// Median seconds of `rounds` runs, after one warm-up run.
    static func measure(_ rounds: Int, _ body: () -> Void) -> Double {
        body()
        let clock = ContinuousClock()
        var samples: [Double] = []
        for _ in 0..<rounds {
            let d = clock.measure(body)
            samples.append(Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18)
        }
        samples.sort()
        return samples[samples.count / 2]
    }
}

extension String {
    func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
