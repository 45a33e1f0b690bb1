import Glibc
import CGunnSys

/// An errno from a failed system call, with the call's name. EINTR never escapes (calls are
/// retried); EBADF and EFAULT mean a bug of ours and trap.
public struct Errno: Error, Equatable, Sendable, CustomStringConvertible {
    public let code: Int32
    public let call: String
    public init(code: Int32, call: String) { self.code = code; self.call = call }
    public var description: String { "\(call): \(String(cString: strerror(code))) (errno \(code))" }

    public var isWouldBlock: Bool { code == EAGAIN || code == EWOULDBLOCK }
}

/// Typed wrappers over the few system calls GunnIO uses.
public enum Sys {
    @inline(__always)
    static func check(_ call: String, _ body: () -> Int) throws(Errno) -> Int {
        while true {
            let r = body()
            if r >= 0 { return r }
            let e = errno
            if e == EINTR { continue }
            precondition(e != EBADF && e != EFAULT, "\(call) with a bad descriptor or address: a bug in gunn")
            throw Errno(code: e, call: call)
        }
    }

    public static func socketUnix() throws(Errno) -> Int32 {
        Int32(try check("socket") { Int(Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)) })
    }

    /// A sockaddr_un for `path`; paths longer than sun_path are refused.
    static func withAddress<R>(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R) throws(Errno) -> R {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: addr.sun_path)
        guard bytes.count < capacity else { throw Errno(code: ENAMETOOLONG, call: "sockaddr_un(\(path))") }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
            raw[bytes.count] = 0
        }
        return withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
    }

    public static func bind(_ fd: Int32, path: String) throws(Errno) {
        let r: Int32 = try withAddress(path) { Glibc.bind(fd, $0, $1) }
        if r != 0 { throw Errno(code: errno, call: "bind(\(path))") }
    }

    public static func listen(_ fd: Int32, backlog: Int32 = 128) throws(Errno) {
        _ = try check("listen") { Int(Glibc.listen(fd, backlog)) }
    }

    /// Starts a non-blocking connect; EINPROGRESS is not an error (wait for writability).
    public static func connect(_ fd: Int32, path: String) throws(Errno) -> Bool {
        while true {
            let r: Int32 = try withAddress(path) { Glibc.connect(fd, $0, $1) }
            if r == 0 { return true }
            let e = errno
            if e == EINTR { continue }
            if e == EINPROGRESS || e == EAGAIN { return false }
            throw Errno(code: e, call: "connect(\(path))")
        }
    }

    /// Accepts one connection, or nil when none is waiting.
    public static func accept(_ fd: Int32) throws(Errno) -> Int32? {
        while true {
            let r = gunn_accept_nonblocking(fd)
            if r >= 0 { return r }
            let e = errno
            if e == EINTR || e == ECONNABORTED { continue }
            if e == EAGAIN || e == EWOULDBLOCK { return nil }
            throw Errno(code: e, call: "accept4")
        }
    }

    /// Reads into `buffer`; 0 is end of stream, nil means it would block.
    public static func read(_ fd: Int32, _ buffer: UnsafeMutableRawBufferPointer) throws(Errno) -> Int? {
        while true {
            let r = Glibc.read(fd, buffer.baseAddress, buffer.count)
            if r >= 0 { return r }
            let e = errno
            if e == EINTR { continue }
            if e == EAGAIN || e == EWOULDBLOCK { return nil }
            throw Errno(code: e, call: "read")
        }
    }

    /// Writes what it can; nil means it would block.
    public static func write(_ fd: Int32, _ buffer: UnsafeRawBufferPointer) throws(Errno) -> Int? {
        while true {
            let r = Glibc.send(fd, buffer.baseAddress, buffer.count, Int32(MSG_NOSIGNAL))
            if r >= 0 { return r }
            let e = errno
            if e == EINTR { continue }
            if e == EAGAIN || e == EWOULDBLOCK { return nil }
            throw Errno(code: e, call: "send")
        }
    }

    public static func close(_ fd: Int32) { _ = Glibc.close(fd) }

    /// The resident set of a process (this one by default) in bytes, from /proc/PID/statm; 0
    /// when it cannot be read.
    public static func residentBytes(pid: Int32? = nil) -> UInt64 {
        let path = pid.map { "/proc/\($0)/statm" } ?? "/proc/self/statm"
        let fd = Glibc.open(path, O_RDONLY)
        guard fd >= 0 else { return 0 }
        defer { _ = Glibc.close(fd) }
        var buf = [UInt8](repeating: 0, count: 128)
        let n = buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { return 0 }
        let fields = buf[..<n].split(separator: UInt8(ascii: " "))
        guard fields.count > 1, let pages = UInt64(String(decoding: fields[1], as: UTF8.self)) else { return 0 }
        return pages * UInt64(sysconf(Int32(_SC_PAGESIZE)))
    }

    public static func chmod(_ path: String, _ mode: mode_t) throws(Errno) {
        _ = try check("chmod(\(path))") { Int(Glibc.chmod(path, mode)) }
    }

    public static func unlink(_ path: String) { _ = Glibc.unlink(path) }

    public static func socketError(_ fd: Int32) -> Int32 {
        var err: Int32 = 0
        var len = socklen_t(MemoryLayout<Int32>.size)
        _ = getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len)
        return err
    }

    public struct PeerCredentials: Sendable, Equatable { public let uid: uid_t, gid: gid_t, pid: pid_t }

    public static func peerCredentials(_ fd: Int32) throws(Errno) -> PeerCredentials {
        var uid: uid_t = 0, gid: gid_t = 0, pid: pid_t = 0
        guard gunn_peer_credentials(fd, &uid, &gid, &pid) == 0 else { throw Errno(code: errno, call: "getsockopt(SO_PEERCRED)") }
        return PeerCredentials(uid: uid, gid: gid, pid: pid)
    }

    /// A pair of connected descriptors for waking the loop (eventfd).
    public static func eventFD() throws(Errno) -> Int32 {
        Int32(try check("eventfd") { Int(gunn_eventfd()) })
    }

    /// Wakes whoever polls the eventfd `fd` (a full counter only means it is already awake).
    public static func signalEventFD(_ fd: Int32) {
        var one: UInt64 = 1
        _ = try? check("write(eventfd)") { Glibc.write(fd, &one, 8) }
    }

    // MARK: - TCP (the LLM adapter's HTTP client)

    /// One address of a host, as `getaddrinfo` gave it, copied out of the resolver's list.
    public struct SocketAddress: Sendable {
        public var family: Int32
        public var socketType: Int32
        public var proto: Int32
        var storage: sockaddr_storage
        var length: socklen_t
    }

    /// The addresses of `host`:`port` for a stream socket, or the resolver's reason for none.
    /// (Resolution may block on DNS; an IP address is answered at once.)
    public static func resolveStream(host: String, port: UInt16) -> Result<[SocketAddress], ResolveError> {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var res: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &res)
        guard rc == 0, let first = res else { return .failure(ResolveError(host: host, reason: String(cString: gai_strerror(rc)))) }
        defer { freeaddrinfo(res) }
        var out: [SocketAddress] = []
        var p: UnsafeMutablePointer<addrinfo>? = first
        while let a = p, out.count < 16 {
            var storage = sockaddr_storage()
            let length = min(a.pointee.ai_addrlen, socklen_t(MemoryLayout<sockaddr_storage>.size))
            withUnsafeMutableBytes(of: &storage) { dst in dst.copyMemory(from: UnsafeRawBufferPointer(start: a.pointee.ai_addr, count: Int(length))) }
            out.append(SocketAddress(family: a.pointee.ai_family, socketType: a.pointee.ai_socktype, proto: a.pointee.ai_protocol,
                                     storage: storage, length: length))
            p = a.pointee.ai_next
        }
        return .success(out)
    }

    public struct ResolveError: Error, Sendable, CustomStringConvertible {
        public let host: String, reason: String
        public var description: String { "cannot resolve \(host): \(reason)" }
    }

    /// A listening TCP socket (non-blocking, close-on-exec, SO_REUSEADDR, backlog `backlog`) on
    /// `host` (a numeric address, e.g. 127.0.0.1 or ::1) and `port` (0: the kernel picks a free
    /// one); returns it with the port it is bound to.
    public static func listenTCP(host: String, port: UInt16, backlog: Int32 = 128) throws(Errno) -> (fd: Int32, port: UInt16) {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_NUMERICHOST | AI_PASSIVE
        var res: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &res)
        guard rc == 0, let a = res else { throw Errno(code: EINVAL, call: "getaddrinfo(\(host)): \(String(cString: gai_strerror(rc)))") }
        defer { freeaddrinfo(res) }
        let fd = Int32(try check("socket") {
            Int(Glibc.socket(a.pointee.ai_family, a.pointee.ai_socktype | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), a.pointee.ai_protocol))
        })
        do {
            var one: Int32 = 1
            _ = try check("setsockopt(SO_REUSEADDR)") { Int(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))) }
            _ = try check("bind(\(host):\(port))") { Int(Glibc.bind(fd, a.pointee.ai_addr, a.pointee.ai_addrlen)) }
            try listen(fd, backlog: backlog)
            return (fd, try localPort(fd))
        } catch {
            _ = Glibc.close(fd)
            throw error
        }
    }

    /// The local port a TCP socket is bound to (getsockname).
    public static func localPort(_ fd: Int32) throws(Errno) -> UInt16 {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = try withUnsafeMutablePointer(to: &storage) { (p) throws(Errno) -> Int in
            try p.withMemoryRebound(to: sockaddr.self, capacity: 1) { (sa) throws(Errno) -> Int in
                try check("getsockname") { Int(getsockname(fd, sa, &length)) }
            }
        }
        switch Int32(storage.ss_family) {
        case AF_INET:
            return withUnsafePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin_port) } }
        case AF_INET6:
            return withUnsafePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin6_port) } }
        default:
            throw Errno(code: EAFNOSUPPORT, call: "getsockname: not a TCP socket")
        }
    }

    /// TCP_NODELAY: small writes leave at once (request/response and WebSocket traffic).
    public static func setNoDelay(_ fd: Int32) throws(Errno) {
        var one: Int32 = 1
        _ = try check("setsockopt(TCP_NODELAY)") { Int(setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))) }
    }

    /// A non-blocking, close-on-exec socket for `address`.
    public static func socket(for address: SocketAddress) throws(Errno) -> Int32 {
        let type = address.socketType | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue)
        return Int32(try check("socket") { Int(Glibc.socket(address.family, type, address.proto)) })
    }

    /// Starts a non-blocking connect to `address`: true when already connected, false when in
    /// progress (wait for writability, then `socketError`).
    public static func connect(_ fd: Int32, to address: SocketAddress) throws(Errno) -> Bool {
        var a = address
        while true {
            let r = withUnsafePointer(to: &a.storage) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, a.length) }
            }
            if r == 0 { return true }
            let e = errno
            if e == EINTR { continue }
            if e == EINPROGRESS || e == EALREADY { return false }
            precondition(e != EBADF && e != EFAULT, "connect with a bad descriptor or address: a bug in gunn")
            throw Errno(code: e, call: "connect")
        }
    }

    /// Waits for events on `fds` for at most `timeoutMs` (-1: no limit); the number of
    /// descriptors with events, 0 on timeout. EINTR is retried with the same timeout.
    public static func poll(_ fds: inout [pollfd], timeoutMs: Int32) throws(Errno) -> Int {
        try fds.withUnsafeMutableBufferPointer { (b) throws(Errno) -> Int in
            try check("poll") { Int(Glibc.poll(b.baseAddress, nfds_t(b.count), timeoutMs)) }
        }
    }

    /// Clears or sets O_NONBLOCK.
    public static func setNonBlocking(_ fd: Int32, _ on: Bool) throws(Errno) {
        let flags = try check("fcntl(F_GETFL)") { Int(fcntl(fd, F_GETFL)) }
        let wanted = on ? Int32(flags) | O_NONBLOCK : Int32(flags) & ~O_NONBLOCK
        _ = try check("fcntl(F_SETFL)") { Int(fcntl(fd, F_SETFL, wanted)) }
    }

    /// SO_RCVTIMEO and SO_SNDTIMEO: a blocking read or write that waits longer fails with EAGAIN.
    public static func setIOTimeout(_ fd: Int32, seconds: Double) throws(Errno) {
        let whole = max(0, seconds.rounded(.down))
        var tv = timeval(tv_sec: Int(min(whole, 1e9)), tv_usec: Int((max(0, seconds) - whole) * 1e6))
        for option in [SO_RCVTIMEO, SO_SNDTIMEO] {
            _ = try check("setsockopt") { Int(setsockopt(fd, SOL_SOCKET, option, &tv, socklen_t(MemoryLayout<timeval>.size))) }
        }
    }

    /// shutdown(SHUT_RDWR): ends a blocking read or a connect in progress on another thread. A
    /// socket not (yet) connected is no error.
    public static func shutdown(_ fd: Int32) {
        _ = Glibc.shutdown(fd, Int32(SHUT_RDWR))
    }

    /// Receives into `buffer`; 0 is end of stream, nil means it would block (or SO_RCVTIMEO passed).
    public static func receive(_ fd: Int32, _ buffer: UnsafeMutableRawBufferPointer) throws(Errno) -> Int? {
        while true {
            let r = Glibc.recv(fd, buffer.baseAddress, buffer.count, 0)
            if r >= 0 { return r }
            let e = errno
            if e == EINTR { continue }
            if e == EAGAIN || e == EWOULDBLOCK { return nil }
            precondition(e != EBADF && e != EFAULT, "recv with a bad descriptor or address: a bug in gunn")
            throw Errno(code: e, call: "recv")
        }
    }
}
