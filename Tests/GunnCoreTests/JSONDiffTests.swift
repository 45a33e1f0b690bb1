import XCTest
@testable import GunnCore

final class JSONDiffTests: XCTestCase {
    /// A random document from a small vocabulary of keys and values, so that two documents share
    /// structure often enough for the diff to recurse.
    static func randomDocument(_ rng: inout SplitMix64, depth: Int = 0) -> JSONValue {
        let kind = depth >= 4 ? rng.next(in: 0...3) : rng.next(in: 0...6)
        switch kind {
        case 0: return .null
        case 1: return .bool(rng.next(below: 2) == 1)
        case 2: return .number(Double(rng.next(in: -3...3)) / 2)
        case 3: return .string(["a", "b", "é", "e\u{301}", "~/", ""][rng.next(in: 0...5)])
        case 4, 5:
            var o = JSONObject()
            for _ in 0..<rng.next(in: 0...5) { o[["k", "l", "m", "a/b", "~", "n"][rng.next(in: 0...5)]] = randomDocument(&rng, depth: depth + 1) }
            return .object(o)
        default:
            return .array((0..<rng.next(in: 0...5)).map { _ in randomDocument(&rng, depth: depth + 1) })
        }
    }

    /// Derives `b` from `a` by a few random edits, so pairs are close, as views are.
    static func mutate(_ v: JSONValue, _ rng: inout SplitMix64, depth: Int = 0) -> JSONValue {
        if rng.next(below: 5) == 0 { return randomDocument(&rng, depth: depth) }
        switch v {
        case .object(var o):
            for key in o.sortedKeys where rng.next(below: 3) == 0 {
                if rng.next(below: 3) == 0 { o.removeValue(forKey: key) } else { o[key] = mutate(o[key]!, &rng, depth: depth + 1) }
            }
            if rng.next(below: 3) == 0 { o[["k", "z", "~1"][rng.next(in: 0...2)]] = randomDocument(&rng, depth: depth + 1) }
            return .object(o)
        case .array(var a):
            if !a.isEmpty, rng.next(below: 3) == 0 { a.remove(at: Int(rng.next(below: UInt64(a.count)))) }
            if rng.next(below: 3) == 0 { a.insert(randomDocument(&rng, depth: depth + 1), at: Int(rng.next(below: UInt64(a.count + 1)))) }
            for i in a.indices where rng.next(below: 4) == 0 { a[i] = mutate(a[i], &rng, depth: depth + 1) }
            return .array(a)
        default:
            return v
        }
    }

    func testApplyOfDiffGivesTheNewDocumentForTenThousandSeededPairs() throws {
        var rng = SplitMix64(seed: 20261125)
        var wholeReplaces = 0, empty = 0
        for i in 0..<10_000 {
            let a = Self.randomDocument(&rng)
            let b = i % 4 == 0 ? Self.randomDocument(&rng) : Self.mutate(a, &rng)
            let maxOps = Int(rng.next(in: 1...12))
            let patch = JSONDiff.diff(a, b, maxOps: maxOps)
            let result = try patch.apply(to: a)
            XCTAssertEqual(CanonicalJSON.encode(result), CanonicalJSON.encode(b), "pair \(i): \(a) -> \(b) via \(patch.json)")
            if JSONDiff.isWholeReplace(patch) { wholeReplaces += 1 } else {
                XCTAssertLessThanOrEqual(patch.operations.count, maxOps, "pair \(i)")
            }
            if patch.operations.isEmpty { empty += 1; XCTAssertEqual(a, b) }
        }
        // The generator must exercise both paths.
        XCTAssertGreaterThan(wholeReplaces, 100)
        XCTAssertGreaterThan(10_000 - wholeReplaces - empty, 1000)
    }

    func testObjectMembersAreAddressedByKeyAndRemovalsAreExplicit() throws {
        let a: JSONValue = ["agents": ["x": ["pos": [0, 0]], "y": ["pos": [1, 1]]]]
        let b: JSONValue = ["agents": ["x": ["pos": [0, 1]], "z": ["pos": [2, 2]]]]
        let patch = JSONDiff.diff(a, b)
        XCTAssertEqual(patch.operations, [
            .remove(path: try JSONPointer("/agents/y")),
            .replace(path: try JSONPointer("/agents/x/pos/1"), value: 1),
            .add(path: try JSONPointer("/agents/z"), value: ["pos": [2, 2]]),
        ])
    }

    func testArrayInsertAtFrontIsOneAdd() throws {
        let patch = JSONDiff.diff([1, 2, 3, 4], [0, 1, 2, 3, 4])
        XCTAssertEqual(patch.operations, [.add(path: try JSONPointer("/0"), value: 0)])
        let shrink = JSONDiff.diff([1, 2, 3, 4, 5], [1, 5])
        XCTAssertEqual(shrink.operations, [.remove(path: try JSONPointer("/3")), .remove(path: try JSONPointer("/2")), .remove(path: try JSONPointer("/1"))])
    }

    func testAboveMaxOpsTheDiffIsOneWholeReplace() {
        let a: JSONValue = .object(JSONObject(Dictionary(uniqueKeysWithValues: (0..<10).map { ("k\($0)", JSONValue.number(Double($0))) })))
        let b: JSONValue = .object(JSONObject(Dictionary(uniqueKeysWithValues: (0..<10).map { ("k\($0)", JSONValue.number(Double($0 + 1))) })))
        XCTAssertEqual(JSONDiff.diff(a, b, maxOps: 10).operations.count, 10)
        let capped = JSONDiff.diff(a, b, maxOps: 9)
        XCTAssertTrue(JSONDiff.isWholeReplace(capped))
        XCTAssertEqual(capped.operations, [.replace(path: .root, value: b)])
    }

    func testDiffSeesByteDifferencesSwiftStringEqualityWouldHide() {
        let patch = JSONDiff.diff(["n": "\u{e9}"], ["n": "e\u{301}"])
        XCTAssertEqual(patch.operations.count, 1)
    }

    /// The same document with every object's members inserted in the reverse of sorted order into
    /// a table of another capacity: equal as JSON, but its Dictionary iterates in another order.
    static func rebuilt(_ v: JSONValue) -> JSONValue {
        switch v {
        case .object(let o):
            var storage = [JSONKey: JSONValue](minimumCapacity: 97)
            for key in o.sortedKeys.reversed() { storage[JSONKey(key)] = rebuilt(o[key]!) }
            return .object(JSONObject(storage: storage))
        case .array(let a): return .array(a.map(rebuilt))
        default: return v
        }
    }

    /// A diff depends on the documents only, never on how their objects happen to be stored
    /// (Dictionary order differs with insertion history, capacity and the per-process hash seed,
    /// and a delta's bytes must not).
    func testDiffIsIndependentOfHowObjectsAreStored() throws {
        var rng = SplitMix64(seed: 1)
        var objectsCompared = 0
        for i in 0..<300 {
            let a = Self.randomDocument(&rng)
            let b = i % 2 == 0 ? Self.randomDocument(&rng) : Self.mutate(a, &rng)
            let a2 = Self.rebuilt(a), b2 = Self.rebuilt(b)
            XCTAssertEqual(a2, a)
            XCTAssertEqual(b2, b)
            if case .object(let o) = a, o.count > 1 { objectsCompared += 1 }
            let patch = JSONDiff.diff(a, b)
            XCTAssertEqual(CanonicalJSON.encode(JSONDiff.diff(a2, b2).json), CanonicalJSON.encode(patch.json), "pair \(i): \(a) -> \(b)")
            XCTAssertEqual(CanonicalJSON.encode(JSONDiff.diff(a, b2).json), CanonicalJSON.encode(patch.json), "pair \(i)")
        }
        XCTAssertGreaterThan(objectsCompared, 20, "the generator made objects with several members")
        // And the order itself, written out by hand: the removals by key, then the new document's
        // members by key, each a replace (changed) or an add (new).
        let a: JSONValue = ["m": 1, "b": 2, "z": 3, "a": 4, "k": 5]
        let b: JSONValue = ["m": 9, "c": 8, "b": 7, "y": 6]
        XCTAssertEqual(JSONDiff.diff(Self.rebuilt(a), b).operations, [
            .remove(path: try JSONPointer("/a")), .remove(path: try JSONPointer("/k")), .remove(path: try JSONPointer("/z")),
            .replace(path: try JSONPointer("/b"), value: 7), .add(path: try JSONPointer("/c"), value: 8),
            .replace(path: try JSONPointer("/m"), value: 9), .add(path: try JSONPointer("/y"), value: 6),
        ])
    }
}
