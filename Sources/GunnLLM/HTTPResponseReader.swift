import Foundation
#if canImport(GunnCore)
import GunnCore
#endif

/// Reads one HTTP/1.1 response from a byte source: the status line and headers, then the body as
/// it arrives — chunked, Content-Length, or until the connection closes. No I/O of its own (the
/// source is a closure), so it is tested and fuzzed on bytes cut at any place. Every malformed
/// response, a non-2xx status (with the start of its body), a close before the body is complete
/// and a stall are LLM_SERVICE_ERROR; every line and the buffered status body have a limit.
public struct HTTPResponseReader {
    /// Fills the buffer: the count read (0 at the end of the stream), or nil after a stall.
    public typealias Source = (inout [UInt8]) throws -> Int?

    /// Longest status or header line, and chunk-size line.
    public static let maxLineBytes = 64 * 1024
    /// Most headers in one response.
    public static let maxHeaders = 128
    /// Bytes of a non-2xx body quoted in the error.
    public static let maxErrorBodyBytes = 2048

    let source: Source
    let stallSeconds: Double
    var buf: [UInt8] = []
    var pos = 0
    /// Where the search for the next newline resumes: a line trickled in byte by byte is scanned once.
    var scanned = 0
    var eof = false
    var scratch = [UInt8](repeating: 0, count: 16 * 1024)

    public init(stallSeconds: Double, source: @escaping Source) {
        self.stallSeconds = stallSeconds
        self.source = source
    }

    static func fail(_ message: String) -> GunnError { GunnError(.llmServiceError, message) }

    /// A source over bytes already in memory, `chunk` bytes a read (for tests and the fuzzer: the
    /// outcome must not depend on where the reads are cut); after `stallAfter` reads it stalls.
    public static func source(_ bytes: [UInt8], chunk: Int, stallAfter: Int? = nil) -> Source {
        var offset = 0, reads = 0
        return { buffer in
            reads += 1
            if let s = stallAfter, reads > s { return nil }
            let n = min(chunk, buffer.count, bytes.count - offset)
            buffer.replaceSubrange(0..<n, with: bytes[offset..<(offset + n)])
            offset += n
            return n
        }
    }

    /// Reads the response; the body's bytes go to `onBody` in order as they arrive. `what` names
    /// the request in errors (host, port and path).
    public mutating func readResponse(from what: String, onBody: ([UInt8]) throws -> Void) throws {
        let status = try line()
        let parts = status.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), parts[1].count == 3, let code = Int(parts[1]) else {
            throw Self.fail("malformed HTTP status line: \(status.prefix(80))")
        }
        var headers: [String: String] = [:]
        var count = 0
        while true {
            let l = try line()
            if l.isEmpty { break }
            count += 1
            guard count <= Self.maxHeaders else { throw Self.fail("malformed HTTP: more than \(Self.maxHeaders) headers") }
            guard let c = l.firstIndex(of: ":") else { throw Self.fail("malformed HTTP header line: \(l.prefix(80))") }
            headers[l[..<c].lowercased()] = l[l.index(after: c)...].trimmingCharacters(in: .whitespaces)
        }
        guard (200..<300).contains(code) else {
            let body = (try? rest(max: Self.maxErrorBodyBytes)) ?? []
            throw Self.fail("HTTP \(code) from \(what): \(String(decoding: body, as: UTF8.self).prefix(300))")
        }
        if headers["transfer-encoding"]?.lowercased().contains("chunked") == true {
            while true {
                let sizeLine = try line()
                let hex = sizeLine.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
                guard !hex.isEmpty, hex.count <= 15, hex.allSatisfy(\.isHexDigit), let n = Int(hex, radix: 16) else {
                    throw Self.fail("malformed chunk size: \(sizeLine.prefix(40))")
                }
                if n == 0 {
                    while try !line().isEmpty {} // trailers
                    return
                }
                var left = n
                while left > 0 {
                    let part = try bytes(upTo: left)
                    left -= part.count
                    try onBody(part)
                }
                guard try line().isEmpty else { throw Self.fail("malformed chunk: no CRLF after its data") }
            }
        } else if let lengthText = headers["content-length"] {
            guard !lengthText.isEmpty, lengthText.count <= 15, lengthText.allSatisfy(\.isASCIIDigit), let len = Int(lengthText) else {
                throw Self.fail("malformed Content-Length: \(lengthText.prefix(40))")
            }
            var left = len
            while left > 0 {
                let part = try bytes(upTo: left)
                left -= part.count
                try onBody(part)
            }
        } else {
            while let part = try bytesUntilClose() { try onBody(part) }
        }
    }

    mutating func fill() throws {
        // What was consumed goes, so a long stream does not keep all it read.
        if pos > 0 && (pos == buf.count || pos >= 4096) {
            buf.removeSubrange(0..<pos)
            scanned = max(0, scanned - pos)
            pos = 0
        }
        guard let n = try source(&scratch) else { throw Self.fail("the stream stalled: nothing for \(stallSeconds) s") }
        if n == 0 { eof = true } else { buf += scratch[0..<n] }
    }

    mutating func line() throws -> String {
        while true {
            if let nl = buf[max(pos, scanned)...].firstIndex(of: 0x0A) {
                var end = nl
                if end > pos && buf[end - 1] == 0x0D { end -= 1 }
                guard end - pos <= Self.maxLineBytes else { throw Self.fail("malformed HTTP: a line over \(Self.maxLineBytes) bytes") }
                let s = String(decoding: buf[pos..<end], as: UTF8.self)
                pos = nl + 1
                return s
            }
            scanned = buf.count
            guard buf.count - pos <= Self.maxLineBytes else { throw Self.fail("malformed HTTP: a line over \(Self.maxLineBytes) bytes") }
            try fill()
            if eof { throw Self.fail("the connection closed in the middle of the HTTP response") }
        }
    }

    mutating func bytes(upTo n: Int) throws -> [UInt8] {
        if pos == buf.count { try fill(); if eof { throw Self.fail("the connection closed before the body was complete") } }
        let take = min(n, buf.count - pos)
        defer { pos += take }
        return Array(buf[pos..<(pos + take)])
    }

    mutating func bytesUntilClose() throws -> [UInt8]? {
        if pos == buf.count { try fill(); if eof { return nil } }
        defer { pos = buf.count }
        return Array(buf[pos...])
    }

    mutating func rest(max: Int) throws -> [UInt8] {
        while buf.count - pos < max && !eof { try fill() }
        return Array(buf[pos..<min(buf.count, pos + max)])
    }
}

extension Character {
    var isASCIIDigit: Bool { asciiValue.map { $0 >= 0x30 && $0 <= 0x39 } ?? false }
}
