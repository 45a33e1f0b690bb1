import Foundation
import XCTest
import CSQLite
@testable import GunnStore
@testable import GunnCore

/// Builds chained entries the way the orchestrator will: canonical effect JSON, checksum over it.
struct ChainBuilder {
    var prev: String?
    var seq: UInt64 = 0

    mutating func next(kind: String = "Speak", text: String = "hi", req: String? = nil, agent: String? = "a") -> StoredEntry {
        seq += 1
        let effect = Effect(uuid: "u\(seq)", kind: kind, payload: ["agent_id": .string(agent ?? "w"), "text": .string(text)],
                            globalSeq: seq, simTime: Double(seq), sourceID: agent ?? "world")
        let bytes = effect.canonicalBytes
        let sum = HashChain.checksum(previous: prev, canonicalEffect: bytes)
        prev = sum
        return StoredEntry(globalSeq: seq, simTime: Double(seq), wallTime: 1000 + Double(seq), reqID: req ?? "r\(seq)", agentID: agent, worldID: "w1", effect: bytes, checksum: sum)
    }

    mutating func batch(_ n: Int) -> [StoredEntry] { (0..<n).map { _ in next() } }
}

final class EventLogStoreTests: XCTestCase {
    var dir: URL!
    var path: String { dir.appendingPathComponent("events.sqlite").path }

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("gunn-store-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func open(_ options: EventLogStoreOptions = EventLogStoreOptions()) throws -> EventLogStore {
        try EventLogStore(path: path, worldID: "w1", worldSeed: 7, options: options, now: 1)
    }

    /// Changes the file behind the store's back (a second connection), as corruption would.
    func tamper(_ sql: String) throws {
        let db = try SQLiteDatabase(path: path)
        try db.execute(sql)
    }

    /// The log holds one world: a batch with an entry of another is refused whole, and so is a
    /// resend of a stored seq that names another world.
    func testEntriesOfAnotherWorldAreRefusedAndNothingIsWritten() throws {
        let store = try open()
        var chain = ChainBuilder()
        try store.append(chain.batch(2), at: 1)
        var other = chain
        var foreign = [other.next(), other.next()]
        foreign[1].worldID = "w2"
        XCTAssertThrowsError(try store.append(foreign, at: 1)) { e in
            XCTAssertEqual((e as? GunnError)?.code, .worldMismatch)
            XCTAssertTrue("\(e)".contains("w2") && "\(e)".contains("nothing was written"), "\(e)")
        }
        var resend = try XCTUnwrap(try store.read(from: 2, to: 2).first)
        resend.worldID = "w0"
        XCTAssertThrowsError(try store.append([resend], at: 1)) { XCTAssertEqual(($0 as? GunnError)?.code, .worldMismatch) }
        XCTAssertEqual(store.headSeq, 2)
        XCTAssertEqual(store.count, 2)
        let ours = foreign.map { var e = $0; e.worldID = "w1"; return e }
        XCTAssertEqual(try store.append(ours, at: 1).lastSeq, 4, "the same entries of this world go in")
    }

    func testAppendReadReopenAndVerify() throws {
        var chain = ChainBuilder()
        do {
            let store = try open()
            let first = chain.batch(10)
            let ack = try store.append(first, at: 1)
            XCTAssertEqual(ack.lastSeq, 10)
            XCTAssertEqual(ack.checksum, first.last?.checksum)
            XCTAssertEqual(try store.read(from: 3, to: 5).map(\.globalSeq), [3, 4, 5])
            XCTAssertEqual(try store.read(from: 1), first)
            try store.anchor(at: 2, clean: true)
        }
        let again = try open()
        XCTAssertEqual(again.headSeq, 10)
        XCTAssertEqual(again.count, 10)
        XCTAssertTrue(try again.verify().ok)
        try again.append(chain.batch(5), at: 3)
        XCTAssertEqual(again.headSeq, 15)
        XCTAssertThrowsError(try EventLogStore(path: path, worldID: "other", worldSeed: 7, now: 1)) {
            XCTAssertEqual(($0 as? GunnError)?.code, .worldStateCorrupted)
        }
    }

    func testResendIsAcknowledgedAgainAndConflictingResendIsRefused() throws {
        let store = try open()
        var chain = ChainBuilder()
        let batch = chain.batch(5)
        try store.append(batch, at: 1)
        XCTAssertEqual(try store.append(batch, at: 2).lastSeq, 5, "the same batch again: acknowledged, nothing new")
        XCTAssertEqual(store.count, 5)
        var altered = batch[2]
        altered.checksum = String(repeating: "0", count: 64)
        XCTAssertThrowsError(try store.append([altered], at: 3)) { XCTAssertEqual(($0 as? GunnError)?.code, .logIntegrityViolation) }
        XCTAssertEqual(try store.read(from: 3, to: 3).first, batch[2])
    }

    func testBadAppendsAreRefusedWithTheirCodesAndNothingIsWritten() throws {
        var options = EventLogStoreOptions()
        options.maxEffectBytes = 300
        let store = try open(options)
        var chain = ChainBuilder()
        try store.append(chain.batch(3), at: 1)
        func refused(_ batch: [StoredEntry], _ code: ErrorCode, file: StaticString = #filePath, line: UInt = #line) {
            XCTAssertThrowsError(try store.append(batch, at: 2), file: file, line: line) { XCTAssertEqual(($0 as? GunnError)?.code, code, "\($0)", file: file, line: line) }
            XCTAssertEqual(store.headSeq, 3, file: file, line: line)
            XCTAssertEqual(try? store.read(from: 4).count, 0, file: file, line: line)
        }
        // A gap.
        var gapChain = chain
        _ = gapChain.next()
        refused([gapChain.next()], .sequenceGap)
        // A wrong checksum, in the middle of an otherwise good batch: the whole batch is refused.
        var bad = chain
        var b = bad.batch(3)
        b[1].checksum = String(b[1].checksum.reversed())
        refused(b, .logIntegrityViolation)
        // An oversized payload.
        var big = chain
        refused([big.next(text: String(repeating: "x", count: 400))], .payloadTooLarge)
        // A non-canonical payload (whitespace), even with a checksum computed over it.
        var nc = chain.next()
        nc.effect = Array(#"{"global_seq": 4, "kind":"Speak"}"#.utf8)
        nc.checksum = HashChain.checksum(previous: chain.prev == nil ? nil : store.headChecksum, canonicalEffect: nc.effect)
        refused([nc], .invalidJSON)
        chain.seq -= 1
        chain.prev = store.headChecksum
        // And a good batch still goes in afterwards.
        XCTAssertEqual(try store.append(chain.batch(2), at: 3).lastSeq, 5)
    }

    func testVerifyReportsFlippedByteDeletedRowAndTruncatedTailExactly() throws {
        var chain = ChainBuilder()
        do {
            let store = try open()
            try store.append(chain.batch(40), at: 1)
            try store.anchor(at: 2, clean: true)
        }
        try tamper("UPDATE entries SET effect = CAST(replace(CAST(effect AS TEXT), 'hi', 'ho') AS BLOB) WHERE global_seq = 12")
        var report = try open().verify()
        XCTAssertEqual(report.problems, [.checksumMismatch(seq: 12)])
        XCTAssertEqual(report.firstBadSeq, 12)
        try tamper("DELETE FROM entries WHERE global_seq = 25")
        report = try open().verify()
        XCTAssertEqual(report.problems, [.checksumMismatch(seq: 12), .gap(expected: 25, found: 26)])
        try tamper("DELETE FROM entries WHERE global_seq > 37")
        report = try open().verify()
        XCTAssertEqual(report.problems.last, .truncatedTail(lastSeq: 37, anchorSeq: 40))
    }

    static func snapshotState(_ seq: UInt64) -> (state: [UInt8], digest: String) {
        let bytes = CanonicalJSON.encode(["entities": [:], "relationships": [:], "custom": [:], "sim_time": .number(Double(seq)),
                                          "last_global_seq": .number(Double(seq))])
        return (bytes, HashChain.checksum(previous: nil, canonicalEffect: bytes))
    }

    func testSnapshotsAndCompactionKeepVerificationAndAppendsWorking() throws {
        var options = EventLogStoreOptions()
        options.idempotencyTTLSeconds = 1e6
        let store = try open(options)
        var chain = ChainBuilder()
        try store.append(chain.batch(60), at: 1)
        let s50 = Self.snapshotState(50)
        try store.saveSnapshot(globalSeq: 50, state: s50.state, digest: s50.digest)
        XCTAssertEqual(try store.latestSnapshot()?.globalSeq, 50)
        XCTAssertEqual(try store.latestSnapshot()?.chainChecksum, try store.read(from: 50, to: 50).first?.checksum)
        let done = try store.compact(before: 55)
        XCTAssertEqual(done.snapshotSeq, 50)
        XCTAssertEqual(done.dropped, 50)
        XCTAssertEqual(store.firstSeq, 51)
        XCTAssertEqual(try store.read(from: 1).first?.globalSeq, 51)
        let verified = try store.verify()
        XCTAssertTrue(verified.ok, "\(verified)")
        XCTAssertEqual(verified.checked, 10)
        XCTAssertTrue(try store.verify(from: 52).ok)
        // The requests of the dropped entries keep their effects in the idempotency table.
        let records = try store.idempotencyRecords(at: 2, limit: 1000)
        XCTAssertEqual(records.count, 60)
        XCTAssertEqual(records.first?.globalSeq, 1)
        var first = ChainBuilder()
        XCTAssertEqual(records.first?.effect, first.next().effect)
        XCTAssertEqual(try store.idempotencyRecords(at: 2, limit: 5).map(\.globalSeq), [56, 57, 58, 59, 60])
        try store.append(chain.batch(5), at: 2)
        XCTAssertEqual(store.headSeq, 65)
        XCTAssertTrue(try store.verify().ok)
        // Reopened: the same first entry, the chain still verifies from the kept snapshot.
        let again = try open(options)
        XCTAssertEqual(again.firstSeq, 51)
        XCTAssertTrue(try again.verify().ok)
    }

    func testCompactionWithoutACoveringSnapshotIsRefusedAndDropsNothing() throws {
        let store = try open()
        var chain = ChainBuilder()
        try store.append(chain.batch(30), at: 1)
        XCTAssertThrowsError(try store.compact(before: 30)) { XCTAssertEqual(($0 as? GunnError)?.code, .snapshotRequired) }
        let s20 = Self.snapshotState(20)
        try store.saveSnapshot(globalSeq: 20, state: s20.state, digest: s20.digest)
        // A snapshot at 20 does not cover a compaction before 20 (it would drop entry 20 itself).
        XCTAssertThrowsError(try store.compact(before: 20)) { XCTAssertEqual(($0 as? GunnError)?.code, .snapshotRequired) }
        XCTAssertThrowsError(try store.compact(before: 0)) { XCTAssertEqual(($0 as? GunnError)?.code, .snapshotRequired) }
        XCTAssertEqual(store.count, 30)
        XCTAssertEqual(try store.compact(before: 21).snapshotSeq, 20)
        // Compacting again before the same point: the snapshot is now the log's base, no newer one.
        XCTAssertThrowsError(try store.compact(before: 21)) { XCTAssertEqual(($0 as? GunnError)?.code, .snapshotRequired) }
        XCTAssertEqual(store.count, 10)
    }

    func testASnapshotMustMatchItsDigestAndAnEntry() throws {
        var options = EventLogStoreOptions()
        options.snapshotsKept = 2
        let store = try open(options)
        var chain = ChainBuilder()
        try store.append(chain.batch(40), at: 1)
        let s10 = Self.snapshotState(10)
        XCTAssertThrowsError(try store.saveSnapshot(globalSeq: 10, state: s10.state, digest: String(repeating: "0", count: 64))) {
            XCTAssertEqual(($0 as? GunnError)?.code, .worldStateCorrupted)
        }
        let s90 = Self.snapshotState(90)
        XCTAssertThrowsError(try store.saveSnapshot(globalSeq: 90, state: s90.state, digest: s90.digest)) {
            XCTAssertEqual(($0 as? GunnError)?.code, .sequenceGap)
        }
        XCTAssertNil(try store.latestSnapshot())
        // Only the newest two are kept, and the base of a compacted log.
        for seq in [10, 20, 30, 40] as [UInt64] {
            let s = Self.snapshotState(seq)
            try store.saveSnapshot(globalSeq: seq, state: s.state, digest: s.digest)
            if seq == 20 { try store.compact(before: 21) }
        }
        XCTAssertEqual(try store.latestSnapshot(atOrBefore: 39)?.globalSeq, 30)
        XCTAssertEqual(try store.latestSnapshot(atOrBefore: 29)?.globalSeq, 20, "the compacted log's base is kept")
        XCTAssertNil(try store.latestSnapshot(atOrBefore: 19))
        XCTAssertTrue(try store.verify().ok)
    }

    func testAFullyCompactedLogContinuesFromItsSnapshot() throws {
        let store = try open()
        var chain = ChainBuilder()
        try store.append(chain.batch(12), at: 1)
        let s12 = Self.snapshotState(12)
        try store.saveSnapshot(globalSeq: 12, state: s12.state, digest: s12.digest)
        try store.compact(before: 13)
        XCTAssertEqual(store.count, 0)
        let reopened = try open()
        XCTAssertEqual(reopened.headSeq, 12)
        XCTAssertEqual(reopened.firstSeq, 13)
        try reopened.append(chain.batch(3), at: 2)
        XCTAssertTrue(try reopened.verify().ok)
        XCTAssertEqual(try reopened.verify().checked, 3)
    }

    func testIdempotencyTableWithTTL() throws {
        var options = EventLogStoreOptions()
        options.idempotencyTTLSeconds = 10
        let store = try open(options)
        var chain = ChainBuilder()
        try store.append([chain.next(req: "req-1")], at: 100)
        XCTAssertEqual(try store.idempotentSeq(agentID: "a", reqID: "req-1", at: 105), 1)
        XCTAssertNil(try store.idempotentSeq(agentID: "a", reqID: "req-1", at: 111))
        try store.cleanIdempotency(at: 111)
        XCTAssertNil(try store.idempotentSeq(agentID: "a", reqID: "req-1", at: 100))
    }

    func testDurabilitySettingIsApplied() throws {
        var options = EventLogStoreOptions()
        options.durability = .normal
        let store = try open(options)
        let s = try store.db.prepare("PRAGMA synchronous")
        XCTAssertTrue(try s.step())
        XCTAssertEqual(s.int64(0), 1, "NORMAL")
        let j = try store.db.prepare("PRAGMA journal_mode")
        XCTAssertTrue(try j.step())
        XCTAssertEqual(j.string(0), "wal")
        XCTAssertTrue(try store.checkpoint())
    }
}

final class StorageFailureTests: XCTestCase {
    func testAFullDiskRefusesAppendsWithACodeAndWritesNoTornEntry() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("gunn-full-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var options = EventLogStoreOptions()
        options.maxPageCount = 40 // a tiny "disk"
        let store = try EventLogStore(path: dir.appendingPathComponent("e.sqlite").path, worldID: "w1", worldSeed: 1, options: options, now: 1)
        var chain = ChainBuilder()
        var committed: UInt64 = 0
        var failure: GunnError?
        for _ in 0..<1000 {
            let batch = chain.batch(20)
            do { committed = try store.append(batch, at: 1).lastSeq } catch {
                failure = error
                break
            }
        }
        XCTAssertEqual(failure?.code, .logStorageFailure, "\(String(describing: failure))")
        XCTAssertGreaterThan(committed, 0)
        XCTAssertEqual(store.headSeq, committed)
        // Refused from now on, with the same code; what was committed is whole and verifies.
        XCTAssertThrowsError(try store.append(chain.batch(1), at: 2)) { XCTAssertEqual(($0 as? GunnError)?.code, .logStorageFailure) }
        XCTAssertEqual(try store.read(from: 1, limit: 100_000).count, Int(committed))
        XCTAssertTrue(try store.verify().ok)
    }
}
