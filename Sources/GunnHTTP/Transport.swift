import Glibc
import GunnIO
import CTLS

/// What a non-blocking read or write on a connection's transport did.
enum IOOutcome {
    case done(Int)
    /// Nothing now; wait for readability (`wantWrite` false) or writability (true).
    case wouldBlock(wantWrite: Bool)
    case eof
    case failed(String)
}

/// The byte stream under one HTTP connection: plain TCP, or TLS over it. Confined to the
/// connection's event loop thread.
class Transport {
    let fd: Int32
    init(fd: Int32) { self.fd = fd }
    func read(_ b: UnsafeMutableRawBufferPointer) -> IOOutcome {
        do {
            guard let n = try Sys.read(fd, b) else { return .wouldBlock(wantWrite: false) }
            return n == 0 ? .eof : .done(n)
        } catch { return .failed("\(error)") }
    }
    func write(_ b: UnsafeRawBufferPointer) -> IOOutcome {
        do {
            guard let n = try Sys.write(fd, b) else { return .wouldBlock(wantWrite: true) }
            return .done(n)
        } catch { return .failed("\(error)") }
    }
    /// Bytes already decrypted and waiting inside the transport (TLS records read ahead).
    var hasBufferedInput: Bool { false }
    /// Ends our direction of the stream (TLS: a close_notify first).
    func shutdownWrite() { _ = Glibc.shutdown(fd, Int32(SHUT_WR)) }
    func close() { Sys.close(fd) }
}

/// A server TLS context: certificate chain and private key from PEM files, TLS 1.2 or later.
public final class TLSServerContext: @unchecked Sendable {
    // `@unchecked Sendable` is safe: after init the SSL_CTX is only read (SSL_new), which OpenSSL
    // documents as thread-safe for a context that is no longer being configured.
    let ctx: OpaquePointer

    public init(certificateFile: String, keyFile: String) throws(HTTPServerError) {
        guard let ctx = SSL_CTX_new(TLS_server_method()) else { throw HTTPServerError("TLS setup failed: \(tlsErrors())") }
        self.ctx = ctx
        _ = gunn_ssl_ctx_min_tls12(ctx)
        gunn_ssl_ctx_server_modes(ctx)
        guard SSL_CTX_use_certificate_chain_file(ctx, certificateFile) == 1 else {
            throw HTTPServerError("cannot load the certificate \(certificateFile): \(tlsErrors())")
        }
        guard SSL_CTX_use_PrivateKey_file(ctx, keyFile, SSL_FILETYPE_PEM) == 1 else {
            throw HTTPServerError("cannot load the private key \(keyFile): \(tlsErrors())")
        }
        guard SSL_CTX_check_private_key(ctx) == 1 else { throw HTTPServerError("the key \(keyFile) does not match the certificate: \(tlsErrors())") }
    }

    deinit { SSL_CTX_free(ctx) }
}

func tlsErrors() -> String {
    var reasons: [String] = []
    while case let e = ERR_get_error(), e != 0 {
        var buf = [CChar](repeating: 0, count: 256)
        ERR_error_string_n(e, &buf, buf.count)
        reasons.append(String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
    }
    return reasons.isEmpty ? "no OpenSSL reason" : reasons.joined(separator: "; ")
}

/// TLS on a non-blocking socket: the handshake runs inside the first reads and writes
/// (SSL_set_accept_state), and OpenSSL's WANT_READ / WANT_WRITE become the poll events to wait for.
final class TLSTransport: Transport {
    let ssl: OpaquePointer

    init?(fd: Int32, context: TLSServerContext) {
        guard let ssl = SSL_new(context.ctx) else { return nil }
        self.ssl = ssl
        super.init(fd: fd)
        SSL_set_fd(ssl, fd)
        SSL_set_accept_state(ssl)
    }

    deinit { SSL_free(ssl) }

    private func outcome(_ r: Int32) -> IOOutcome {
        let err = SSL_get_error(ssl, r)
        let saved = errno
        switch err {
        case SSL_ERROR_WANT_READ: return .wouldBlock(wantWrite: false)
        case SSL_ERROR_WANT_WRITE: return .wouldBlock(wantWrite: true)
        case SSL_ERROR_ZERO_RETURN: return .eof
        case SSL_ERROR_SYSCALL:
            ERR_clear_error()
            if saved == EAGAIN || saved == EWOULDBLOCK { return .wouldBlock(wantWrite: false) }
            return r == 0 || saved == 0 ? .eof : .failed(String(cString: strerror(saved)))
        default:
            return .failed("TLS: \(tlsErrors())")
        }
    }

    override func read(_ b: UnsafeMutableRawBufferPointer) -> IOOutcome {
        ERR_clear_error()
        let r = SSL_read(ssl, b.baseAddress, Int32(min(b.count, Int(Int32.max))))
        return r > 0 ? .done(Int(r)) : outcome(r)
    }

    override func write(_ b: UnsafeRawBufferPointer) -> IOOutcome {
        guard b.count > 0 else { return .done(0) }
        ERR_clear_error()
        let r = SSL_write(ssl, b.baseAddress, Int32(min(b.count, 1 << 20)))
        return r > 0 ? .done(Int(r)) : outcome(r)
    }

    override var hasBufferedInput: Bool { SSL_pending(ssl) > 0 }

    override func shutdownWrite() {
        ERR_clear_error()
        _ = SSL_shutdown(ssl)
        ERR_clear_error()
        super.shutdownWrite()
    }
}
