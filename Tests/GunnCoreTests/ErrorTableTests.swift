import Foundation
import XCTest
@testable import GunnCore

/// `docs/errors.md` and `ErrorCode.all` must agree row for row, in both directions.
final class ErrorTableTests: XCTestCase {
    struct Row: Equatable, CustomStringConvertible {
        let code: Int, name: String, meaning: String, httpStatus: Int, recovery: String
        var description: String { "| \(code) | \(name) | \(meaning) | \(httpStatus) | \(recovery) |" }
    }

    static func docRows() throws -> [Row] {
        let url = TestPaths.packageRoot.appendingPathComponent("docs/errors.md")
        let text = try String(contentsOf: url, encoding: .utf8)
        var rows: [Row] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            guard trimmed.hasPrefix("|"), trimmed.hasSuffix("|") else { continue }
            let cells = trimmed.dropFirst().dropLast().split(separator: "|", omittingEmptySubsequences: false)
                .map { $0.trimmingCharacters(in: .whitespaces) }
            guard let first = cells.first, let code = Int(first) else { continue } // header and rule lines
            XCTAssertEqual(cells.count, 5, "row for \(code) must have 5 cells: \(trimmed)")
            guard cells.count == 5, let status = Int(cells[3]) else {
                XCTFail("row for \(code) has no numeric HTTP status: \(trimmed)")
                continue
            }
            rows.append(Row(code: code, name: cells[1], meaning: cells[2], httpStatus: status, recovery: cells[4]))
        }
        return rows
    }

    static func codeRows() -> [Row] {
        ErrorCode.all.map { Row(code: $0.code, name: $0.name, meaning: $0.meaning, httpStatus: $0.httpStatus, recovery: $0.recovery) }
    }

    func testDocsTableMatchesErrorCodeInBothDirections() throws {
        let doc = try Self.docRows()
        let code = Self.codeRows()
        XCTAssertFalse(doc.isEmpty, "docs/errors.md has no rows")
        let docByCode = Dictionary(doc.map { ($0.code, $0) }, uniquingKeysWith: { a, _ in a })
        let codeByCode = Dictionary(code.map { ($0.code, $0) }, uniquingKeysWith: { a, _ in a })
        for row in doc {
            guard let mine = codeByCode[row.code] else { XCTFail("docs/errors.md has a row ErrorCode lacks: \(row)"); continue }
            XCTAssertEqual(row, mine, "docs/errors.md and ErrorCode differ for \(row.code)")
        }
        for row in code where docByCode[row.code] == nil {
            XCTFail("ErrorCode has a code docs/errors.md lacks: \(row)")
        }
        XCTAssertEqual(doc.count, code.count, "row counts differ")
    }

    func testCodesAndNamesAreUnique() {
        XCTAssertEqual(Set(ErrorCode.all.map(\.code)).count, ErrorCode.all.count)
        XCTAssertEqual(Set(ErrorCode.all.map(\.name)).count, ErrorCode.all.count)
    }

    func testRequiredCodesArePresent() {
        let required = [
            "STALE_CONTEXT", "INVALID_VIEW_SEQ", "WORLD_STATE_CORRUPTED", "INTENT_CONFLICT", "INVALID_INTENT",
            "INTENT_VALIDATION_FAILED", "DUPLICATE_REQ_ID", "QUOTA_EXCEEDED", "QUEUE_FULL", "TOKEN_BUDGET_EXCEEDED",
            "OPERATION_TIMEOUT", "GENERATION_CANCELLED", "DEBOUNCE_ACTIVE", "UNAUTHORIZED", "FORBIDDEN",
            "INVALID_AGENT_ID", "TENANT_ISOLATION_VIOLATION", "AGENT_QUARANTINED", "ADAPTER_UNAVAILABLE",
            "LLM_SERVICE_ERROR", "UNITY_CONNECTION_LOST", "LOG_INTEGRITY_VIOLATION", "SEQUENCE_GAP",
            "MALFORMED_FRAME", "FRAME_TOO_LARGE", "VERSION_MISMATCH", "UNKNOWN_MESSAGE", "HANDSHAKE_REQUIRED",
        ]
        for name in required { XCTAssertNotNil(ErrorCode.byName(name), "missing \(name)") }
    }

    func testLookupByCodeAndName() {
        XCTAssertEqual(ErrorCode.byCode(2001), .staleContext)
        XCTAssertEqual(ErrorCode.byName("QUEUE_FULL")?.httpStatus, 503)
        XCTAssertNil(ErrorCode.byCode(42))
        let error = GunnError(.quotaExceeded, "agent a1 over 100/s", retryAfterMs: 250)
        XCTAssertEqual(error.description, "QUOTA_EXCEEDED (3001): agent a1 over 100/s [retry after 250 ms]")
    }
}
