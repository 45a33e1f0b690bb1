import Glibc
import GunnCore
import GunnWire
import Synchronization

/// One Unix-socket connection speaking length-prefixed frames: the handshake as the first frame
/// each way under a deadline, coded errors for bad input, heartbeats on an idle link, credit-based
/// flow control with a bounded outbound queue, and epoch fencing.
///
/// `@unchecked Sendable` is safe: every `var` member is touched only on `loop`'s thread (the public
/// methods hop there with `execute`/`submit`), and what other threads read lives in the Mutex `shared`.
public final class FramedConnection: @unchecked Sendable {
    public enum Role: Sendable { case server, client }
    enum State { case handshaking, open, closed }

    public let role: Role
    public let loop: EventLoop
    public let options: ConnectionOptions
    let fd: Int32
    private var state = State.handshaking

    /// What any thread may read: written on the loop, read under the lock.
    private struct Shared: Sendable {
        var closeReason: ConnectionError?
        var peerHello: Hello?
        var welcome: Welcome?
        var peerCredentials: Sys.PeerCredentials?
        var stats = Stats()
    }
    private let shared = Mutex(Shared())
    /// Why the connection closed; nil while it is open.
    public var closeReason: ConnectionError? { shared.withLock { $0.closeReason } }
    /// The peer's Hello (server side), once the handshake passed.
    public var peerHello: Hello? { shared.withLock { $0.peerHello } }
    /// The Welcome sent (server side) or received (client side).
    public var welcome: Welcome? { shared.withLock { $0.welcome } }
    /// Set once by the accepting server before the connection starts, never changed after.
    public var peerCredentials: Sys.PeerCredentials? { shared.withLock { $0.peerCredentials } }
    func setPeerCredentials(_ c: Sys.PeerCredentials?) { shared.withLock { $0.peerCredentials = c } }
    /// The counters now (any thread).
    public var stats: Stats { shared.withLock { $0.stats } }
    private func count(_ body: (inout Stats) -> Void) { shared.withLock { body(&$0.stats) } }
    private func setCloseReason(_ r: ConnectionError) { shared.withLock { $0.closeReason = r } }

    private var decoder: FrameDecoder
    private var writeQueue = FIFOBytes()
    private var waitingForCredit: [[UInt8]] = []
    private var sendCredit = 0
    private var consumedSinceGrant = 0
    private var inbox: [Frame] = []
    private var inboxHead = 0
    private var receivers: [CheckedContinuation<Frame?, Never>] = []
    /// A `receive(upTo:)` waiting: served after each read, so it takes all that read brought.
    private var batchReceiver: (max: Int, CheckedContinuation<[Frame], Never>)?
    /// Set while a batch of frames is queued: one write at the end instead of one per frame.
    private var deferFlush = false
    /// Senders waiting for room in the outbound queue: their frame, how to answer them, their deadline timer.
    private var blockedSenders: [(bytes: [UInt8], resume: (Result<Void, ConnectionError>) -> Void, timer: UInt64)] = []
    private var handshakeWaiter: CheckedContinuation<Void, any Error>?
    private var lastReceivedAt = EventLoop.now()
    private var heartbeatTimer: UInt64?
    private var handshakeTimer: UInt64?
    private var peerEpoch: UInt64 = 0
    private var closeAfterFlush = false
    /// Server side: builds the Welcome for a Hello, or refuses it.
    var admit: ((Hello) -> Result<Welcome, ConnectionError>)?
    var onOpen: ((FramedConnection) -> Void)?
    /// Called once, on the loop, when the connection closes.
    var onClose: ((FramedConnection) -> Void)?

    public struct Stats: Sendable {
        public var framesIn = 0, framesOut = 0, bytesIn = 0, bytesOut = 0, staleEpochDropped = 0, pingsSent = 0, maxOutboundQueued = 0, shed = 0
    }

    init(fd: Int32, role: Role, loop: EventLoop, options: ConnectionOptions) {
        self.fd = fd; self.role = role; self.loop = loop; self.options = options
        self.decoder = FrameDecoder(maxFrameBytes: options.maxFrameBytes)
    }

    // MARK: - Public API (any thread)

    /// Sends one frame. Data frames wait for credit; if the outbound queue is full the slow-consumer
    /// policy applies. Throws when the connection is closed or the frame is shed.
    public func send(_ body: Frame.Body, id: UInt64 = 0) async throws {
        let bytes = FrameCodec.encode(Frame(id: id, epoch: options.epoch, body))
        let isData = body.isData
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
            loop.execute { self.enqueueFromCaller(bytes, isData: isData) { r in c.resume(with: r.mapError { $0 as any Error }) } }
        }
    }

    /// Sends several frames with one hop onto the loop (the fast path for streams of frames).
    /// Frames that do not fit the outbound queue wait, one by one, under the slow-consumer policy.
    public func send(contentsOf bodies: [Frame.Body]) async throws {
        try await send(frames: bodies.map { Frame(epoch: options.epoch, $0) })
    }

    /// Sends whole frames (their ids kept, the epoch set here) with one hop onto the loop and
    /// one write for as many as the socket takes.
    public func send(frames: [Frame]) async throws {
        let encoded = encodeForPost(frames)
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
            loop.execute { self.batchingWrites { self.enqueueBatch(encoded[...], c) } }
        }
    }

    /// Queues frames without writing each one, then writes what was queued at once: many frames,
    /// one system call (a write per frame showed in profiles of the orchestrator's replies).
    private func batchingWrites(_ body: () -> Void) {
        let outer = deferFlush
        deferFlush = true
        body()
        deferFlush = outer
        if !outer && state != .closed { flush() }
    }

    private func enqueueBatch(_ frames: ArraySlice<([UInt8], Bool)>, _ c: CheckedContinuation<Void, any Error>) {
        var rest = frames
        while let (bytes, isData) = rest.first {
            guard state == .open else {
                return c.resume(throwing: closeReason ?? ConnectionError(.adapterUnavailable, "connection is not open"))
            }
            rest = rest.dropFirst()
            if isData && waitingForCredit.count + writeQueue.count >= options.maxOutboundFrames {
                // Full: this frame waits under the slow-consumer policy, and the rest of the batch after it.
                let remaining = rest
                return enqueueFromCaller(bytes, isData: true) { [self] result in
                    switch result {
                    case .success: enqueueBatch(remaining, c)
                    case .failure(let e): c.resume(throwing: e)
                    }
                }
            }
            if isData { enqueueData(bytes) } else { enqueueWrite(bytes) }
        }
        c.resume()
    }

    /// Queues frames without waiting, in call order (for pushes from a serial owner). A frame that
    /// does not fit the outbound queue closes the connection with QUEUE_FULL: a peer that fell
    /// that far behind must resynchronise rather than miss a delta.
    public func post(_ frames: [Frame]) {
        let encoded = encodeForPost(frames)
        loop.execute { [self] in batchingWrites { enqueuePosted(encoded) } }
    }

    /// `post` to several connections of one loop in a single hop onto it: a publisher fanning a
    /// commit out to many peers wakes the loop once, not once per peer.
    public static func post(_ batch: [(FramedConnection, [Frame])]) {
        guard let loop = batch.first?.0.loop else { return }
        precondition(batch.allSatisfy { $0.0.loop === loop }, "one hop needs one loop")
        let encoded = batch.map { ($0.0, $0.0.encodeForPost($0.1)) }
        loop.execute { for (c, e) in encoded { c.batchingWrites { c.enqueuePosted(e) } } }
    }

    private func encodeForPost(_ frames: [Frame]) -> [([UInt8], Bool)] {
        frames.map { f -> ([UInt8], Bool) in
            var f = f
            f.epoch = options.epoch
            return (FrameCodec.encode(f), f.body?.isData ?? true)
        }
    }

    private func enqueuePosted(_ encoded: [([UInt8], Bool)]) {
        guard state == .open else { return }
        for (bytes, isData) in encoded {
            if isData && waitingForCredit.count + writeQueue.count >= options.maxOutboundFrames {
                count { $0.shed += 1 }
                return fail(.queueFull, "peer is not reading: pushed frames past the outbound bound of \(options.maxOutboundFrames)")
            }
            if isData { enqueueData(bytes) } else { enqueueWrite(bytes) }
        }
    }

    /// Takes every frame already received (waiting for at least one), up to `max`, in one hop
    /// onto the loop; empty once the connection is closed and drained. Frames that arrive in one
    /// read are handed over together.
    public func receive(upTo max: Int) async -> [Frame] {
        await withCheckedContinuation { (c: CheckedContinuation<[Frame], Never>) in
            loop.execute { [self] in
                precondition(batchReceiver == nil && receivers.isEmpty, "one batch receiver at a time")
                batchReceiver = (Swift.max(1, max), c)
                serveBatchReceiver()
            }
        }
    }

    private func serveBatchReceiver() {
        guard let (max, c) = batchReceiver else { return }
        if inboxHead < inbox.count {
            batchReceiver = nil
            let n = min(max, inbox.count - inboxHead)
            let out = Array(inbox[inboxHead..<(inboxHead + n)])
            inboxHead += n
            if inboxHead == inbox.count { inbox.removeAll(keepingCapacity: true); inboxHead = 0 }
            for f in out { consumed(f) }
            c.resume(returning: out)
        } else if state == .closed {
            batchReceiver = nil
            c.resume(returning: [])
        }
    }

    /// The next frame from the peer, nil once the connection is closed and drained. Taking a frame
    /// returns credit to the peer.
    public func receive() async -> Frame? {
        await withCheckedContinuation { (c: CheckedContinuation<Frame?, Never>) in
            loop.execute { self.takeFromInbox(c) }
        }
    }

    public func close() { loop.execute { self.shutdown(nil) } }

    /// A snapshot of the counters, read on the loop.
    public func currentStats() async -> Stats { await loop.submit { self.stats } }
    public func outboundQueued() async -> Int { await loop.submit { self.waitingForCredit.count + self.writeQueue.count } }

    // MARK: - Loop side

    func start() {
        loop.assertInLoop()
        loop.register(fd, events: Int16(POLLIN)) { [self] ev in handleEvents(ev) }
        handshakeTimer = loop.schedule(after: options.handshakeTimeoutMs / 1000) { [self] in
            if state == .handshaking { fail(.handshakeRequired, "no handshake within \(Int(options.handshakeTimeoutMs)) ms") }
        }
    }

    func beginClientHandshake(_ hello: Hello, _ c: CheckedContinuation<Void, any Error>) {
        handshakeWaiter = c
        start()
        writeControl(.hello(hello))
    }

    private func enqueueFromCaller(_ bytes: [UInt8], isData: Bool, _ c: @escaping (Result<Void, ConnectionError>) -> Void) {
        guard state == .open else {
            c(.failure(closeReason ?? ConnectionError(.adapterUnavailable, "connection is not open")))
            return
        }
        guard isData else { enqueueWrite(bytes); c(.success(())); return }
        if waitingForCredit.count + writeQueue.count < options.maxOutboundFrames {
            enqueueData(bytes)
            c(.success(()))
            return
        }
        // Full: wait for room up to the policy's deadline.
        let waitMs: Double
        switch options.slowConsumer {
        case .shed(let w), .disconnect(let w): waitMs = w
        }
        var timer: UInt64 = 0
        timer = loop.schedule(after: waitMs / 1000) { [self] in senderTimedOut(timer) }
        blockedSenders.append((bytes, c, timer))
    }

    private func senderTimedOut(_ timer: UInt64) {
        guard let i = blockedSenders.firstIndex(where: { $0.timer == timer }) else { return }
        let s = blockedSenders.remove(at: i)
        switch options.slowConsumer {
        case .shed:
            count { $0.shed += 1 }
            s.resume(.failure(ConnectionError(.queueFull, "peer is not reading: outbound queue at its bound of \(options.maxOutboundFrames) frames")))
        case .disconnect:
            s.resume(.failure(ConnectionError(.queueFull, "peer is not reading: disconnecting")))
            fail(.queueFull, "slow consumer: outbound queue full past the deadline")
        }
    }

    private func enqueueData(_ bytes: [UInt8]) {
        if sendCredit > 0 && waitingForCredit.isEmpty {
            sendCredit -= 1
            enqueueWrite(bytes)
        } else {
            waitingForCredit.append(bytes)
        }
        let queued = waitingForCredit.count + writeQueue.count
        count { $0.maxOutboundQueued = max($0.maxOutboundQueued, queued) }
    }

    private func admitBlockedSenders() {
        while !blockedSenders.isEmpty && waitingForCredit.count + writeQueue.count < options.maxOutboundFrames {
            let s = blockedSenders.removeFirst()
            loop.cancelTimer(s.timer)
            enqueueData(s.bytes)
            s.resume(.success(()))
        }
    }

    private func writeControl(_ body: Frame.Body, id: UInt64 = 0) {
        enqueueWrite(FrameCodec.encode(Frame(id: id, epoch: options.epoch, body)))
    }

    private func enqueueWrite(_ bytes: [UInt8]) {
        guard state != .closed else { return }
        writeQueue.push(bytes)
        count { $0.framesOut += 1; $0.bytesOut += bytes.count }
        if !deferFlush { flush() }
    }

    private func flush() {
        while !writeQueue.isEmpty {
            // Many small frames go out in one system call.
            let chunk = writeQueue.coalesced(maxBytes: 64 << 10)
            let written: Int?
            do {
                written = try chunk.withUnsafeBytes { (b) throws(Errno) -> Int? in try Sys.write(fd, b) }
            } catch {
                // The peer closed: what it said before closing (often an Error frame) is still
                // readable and says why, so read it before giving up.
                writeQueue = FIFOBytes()
                readAvailable()
                return shutdown(ConnectionError(.adapterUnavailable, "write failed: \(error)"))
            }
            guard let written else { break }
            writeQueue.consume(written)
        }
        if writeQueue.isEmpty {
            loop.setEvents(fd, Int16(POLLIN))
            if closeAfterFlush { shutdown(closeReason) }
            else { admitBlockedSenders() }
        } else {
            loop.setEvents(fd, Int16(POLLIN | POLLOUT))
        }
    }

    private func handleEvents(_ ev: Int16) {
        assert(loop.inLoop, "FramedConnection state touched off its loop")
        if ev & Int16(POLLOUT) != 0 { flush() }
        if ev & Int16(POLLIN | POLLHUP | POLLERR) != 0 { readAvailable() }
    }

    /// One read buffer per connection, reused (allocating and zeroing 64 KiB per readable event
    /// showed in profiles).
    private var readBuffer = [UInt8](repeating: 0, count: 64 << 10)

    private func readAvailable() {
        batchingWrites { readAvailableFrames() }
        serveBatchReceiver()
    }

    private func readAvailableFrames() {
        // A nested call (a failed write reads what the peer said first) gets a buffer of its own.
        var buffer = readBuffer.isEmpty ? [UInt8](repeating: 0, count: 64 << 10) : readBuffer
        readBuffer = []
        defer { readBuffer = buffer }
        while state != .closed {
            let n: Int?
            do { n = try buffer.withUnsafeMutableBytes { (b) throws(Errno) -> Int? in try Sys.read(fd, b) } } catch {
                return shutdown(ConnectionError(.adapterUnavailable, "read failed: \(error)"))
            }
            guard let n else { break }
            if n == 0 { return shutdown(closeReason ?? ConnectionError(.adapterUnavailable, "peer closed the connection")) }
            lastReceivedAt = EventLoop.now()
            count { $0.bytesIn += n }
            buffer.withUnsafeBytes { decoder.append(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            while state != .closed && !closeAfterFlush {
                let frame: Frame?
                do { frame = try decoder.next() } catch {
                    return fail(error.errorCode, error.description)
                }
                guard let frame else { break }
                count { $0.framesIn += 1 }
                handle(frame)
            }
            if n < buffer.count { break }
        }
    }

    private func handle(_ frame: Frame) {
        guard let body = frame.body else {
            return writeControl(.error(errorMessage(.unknownMessage, "frame \(frame.id) has a body this peer does not know")), id: frame.id)
        }
        if state == .handshaking { return handshake(frame, body) }
        if frame.epoch < peerEpoch { count { $0.staleEpochDropped += 1 }; return }
        switch body {
        case .ping(let n): writeControl(.pong(n))
        case .pong: break
        case .credit(let c):
            sendCredit += Int(c.frames)
            while sendCredit > 0 && !waitingForCredit.isEmpty {
                sendCredit -= 1
                enqueueWrite(waitingForCredit.removeFirst())
            }
            admitBlockedSenders()
        case .hello, .welcome:
            fail(.unknownMessage, "a second handshake on an open connection")
        default:
            if body.isData && inbox.count - inboxHead >= options.receiveWindow {
                return fail(.queueFull, "peer sent past its credit of \(options.receiveWindow) frames")
            }
            deliver(frame)
        }
    }

    private func deliver(_ frame: Frame) {
        if !receivers.isEmpty {
            receivers.removeFirst().resume(returning: frame)
            consumed(frame)
        } else {
            inbox.append(frame)
        }
    }

    private func takeFromInbox(_ c: CheckedContinuation<Frame?, Never>) {
        if inboxHead < inbox.count {
            let f = inbox[inboxHead]
            inboxHead += 1
            if inboxHead == inbox.count { inbox.removeAll(keepingCapacity: true); inboxHead = 0 }
            c.resume(returning: f)
            consumed(f)
        } else if state == .closed {
            c.resume(returning: nil)
        } else {
            receivers.append(c)
        }
    }

    private func consumed(_ f: Frame) {
        guard f.body?.isData == true, state == .open else { return }
        consumedSinceGrant += 1
        if consumedSinceGrant >= max(1, options.receiveWindow / 2) {
            writeControl(.credit(Credit(frames: UInt32(consumedSinceGrant))))
            consumedSinceGrant = 0
        }
    }

    private func handshake(_ frame: Frame, _ body: Frame.Body) {
        switch (role, body) {
        case (.server, .hello(let hello)):
            if hello.protocolMajor != ProtocolVersion.major {
                return fail(.versionMismatch, "this peer speaks protocol \(ProtocolVersion.major).\(ProtocolVersion.minor), the client \(hello.protocolMajor).\(hello.protocolMinor)")
            }
            let result = admit?(hello) ?? .failure(ConnectionError(.internalError, "no admission policy"))
            switch result {
            case .failure(let e): return fail(e.code, e.message)
            case .success(var w):
                w.protocolMajor = ProtocolVersion.major
                w.protocolMinor = min(ProtocolVersion.minor, hello.protocolMinor)
                w.capabilities = options.capabilities.filter { hello.capabilities.contains($0) }
                w.heartbeatMs = UInt32(options.heartbeatMs)
                w.maxFrameBytes = UInt32(options.maxFrameBytes)
                w.initialCredit = UInt32(options.receiveWindow)
                shared.withLock { $0.peerHello = hello; $0.welcome = w }
                peerEpoch = frame.epoch
                writeControl(.welcome(w), id: frame.id)
                opened()
            }
        case (.client, .welcome(let w)):
            guard w.protocolMajor == ProtocolVersion.major else {
                return fail(.versionMismatch, "this peer speaks protocol \(ProtocolVersion.major).\(ProtocolVersion.minor), the server \(w.protocolMajor).\(w.protocolMinor)")
            }
            shared.withLock { $0.welcome = w }
            peerEpoch = frame.epoch
            sendCredit = Int(w.initialCredit)
            opened()
            writeControl(.credit(Credit(frames: UInt32(options.receiveWindow))))
        case (.client, .error(let e)):
            fail(ErrorCode.byCode(Int(e.code)) ?? .internalError, e.message, tellPeer: false)
        default:
            fail(.handshakeRequired, "the first frame must be \(role == .server ? "Hello" : "Welcome")")
        }
    }

    private func opened() {
        state = .open
        if let t = handshakeTimer { loop.cancelTimer(t) }
        armHeartbeat()
        handshakeWaiter?.resume()
        handshakeWaiter = nil
        onOpen?(self)
    }

    private func armHeartbeat() {
        let interval = options.heartbeatMs / 1000
        heartbeatTimer = loop.schedule(after: interval) { [self] in
            guard state == .open else { return }
            let idle = EventLoop.now() - lastReceivedAt
            if idle >= interval * Double(options.missedHeartbeats) {
                return fail(.adapterUnavailable, "peer silent for \(Int(idle * 1000)) ms (\(options.missedHeartbeats) heartbeats)")
            }
            if idle >= interval * 0.9 {
                let n = shared.withLock { s -> Int in s.stats.pingsSent += 1; return s.stats.pingsSent }
                writeControl(.ping(Nonce(UInt64(n))))
            }
            armHeartbeat()
        }
    }

    func errorMessage(_ code: ErrorCode, _ message: String) -> WireErrorMessage {
        WireErrorMessage(code: UInt32(code.code), name: code.name, message: message)
    }

    /// Tells the peer (when it can) and closes this connection only.
    func fail(_ code: ErrorCode, _ message: String, tellPeer: Bool = true) {
        assert(loop.inLoop, "FramedConnection state touched off its loop")
        guard state != .closed, !closeAfterFlush else { return }
        setCloseReason(ConnectionError(code, message))
        if tellPeer {
            // What was queued will not be read anyway; the error goes right after the frame being
            // written (cutting that one would break the framing), so the peer learns why.
            writeQueue.dropAllButPartialHead()
            waitingForCredit.removeAll()
            writeControl(.error(errorMessage(code, message)))
            closeAfterFlush = true
            if writeQueue.isEmpty { shutdown(closeReason) }
            // Do not wait forever for a peer that does not read.
            _ = loop.schedule(after: 1) { [self] in shutdown(closeReason) }
        } else {
            shutdown(closeReason)
        }
    }

    func shutdown(_ reason: ConnectionError?) {
        assert(loop.inLoop, "FramedConnection state touched off its loop")
        guard state != .closed else { return }
        state = .closed
        let why = shared.withLock { s -> ConnectionError in
            if s.closeReason == nil { s.closeReason = reason ?? ConnectionError(.adapterUnavailable, "closed") }
            return s.closeReason!
        }
        loop.deregister(fd)
        Sys.close(fd)
        if let t = heartbeatTimer { loop.cancelTimer(t) }
        if let t = handshakeTimer { loop.cancelTimer(t) }
        handshakeWaiter?.resume(throwing: why)
        handshakeWaiter = nil
        // Frames already received stay readable; then nil.
        if inboxHead >= inbox.count {
            for r in receivers { r.resume(returning: nil) }
            receivers.removeAll()
            if let (_, c) = batchReceiver { batchReceiver = nil; c.resume(returning: []) }
        }
        for s in blockedSenders { loop.cancelTimer(s.timer); s.resume(.failure(why)) }
        blockedSenders.removeAll()
        waitingForCredit.removeAll()
        writeQueue = FIFOBytes()
        onClose?(self)
        onClose = nil
    }
}

/// Encoded frames waiting for the socket, with a partly written head.
struct FIFOBytes {
    private var chunks: [[UInt8]] = []
    private var head = 0
    private var offset = 0
    var count: Int { chunks.count - head }
    var isEmpty: Bool { head == chunks.count }
    mutating func push(_ b: [UInt8]) { chunks.append(b) }
    func peek() -> ArraySlice<UInt8>? { isEmpty ? nil : chunks[head][offset...] }

    /// The unwritten bytes of the first chunks, up to about `maxBytes`, as one buffer.
    func coalesced(maxBytes: Int) -> [UInt8] {
        var out = Array(chunks[head][offset...])
        var i = head + 1
        while i < chunks.count && out.count + chunks[i].count <= maxBytes {
            out.append(contentsOf: chunks[i])
            i += 1
        }
        return out
    }

    /// Drops every chunk not yet started; a chunk partly written stays, to keep the framing whole.
    mutating func dropAllButPartialHead() {
        guard !isEmpty else { return }
        if offset > 0 {
            chunks = [chunks[head]]
        } else {
            chunks = []
            offset = 0
        }
        head = 0
    }

    /// Marks `n` bytes written, across chunk boundaries.
    mutating func consume(_ n: Int) {
        var left = n
        while left > 0 && !isEmpty {
            let here = chunks[head].count - offset
            if left < here { offset += left; return }
            left -= here
            head += 1
            offset = 0
        }
        if head == chunks.count { chunks.removeAll(keepingCapacity: true); head = 0 }
        else if head > 256 && head * 2 > chunks.count { chunks.removeFirst(head); head = 0 }
    }
}
