import XCTest
import CSQLite

/// The system library target links and the library is usable: a real in-memory database,
/// built thread-safe (the log writer relies on it).
final class CSQLiteLinkTests: XCTestCase {
    func testOpensInMemoryDatabaseAndRunsSQL() {
        XCTAssertGreaterThanOrEqual(sqlite3_libversion_number(), 3_035_000, "need SQLite 3.35+")
        XCTAssertNotEqual(sqlite3_threadsafe(), 0)
        var db: OpaquePointer?
        XCTAssertEqual(sqlite3_open(":memory:", &db), SQLITE_OK)
        defer { sqlite3_close(db) }
        XCTAssertEqual(sqlite3_exec(db, "CREATE TABLE t(x INTEGER); INSERT INTO t VALUES (41),(1);", nil, nil, nil), SQLITE_OK)
        var stmt: OpaquePointer?
        XCTAssertEqual(sqlite3_prepare_v2(db, "SELECT sum(x) FROM t", -1, &stmt, nil), SQLITE_OK)
        defer { sqlite3_finalize(stmt) }
        XCTAssertEqual(sqlite3_step(stmt), SQLITE_ROW)
        XCTAssertEqual(sqlite3_column_int64(stmt, 0), 42)
    }
}
