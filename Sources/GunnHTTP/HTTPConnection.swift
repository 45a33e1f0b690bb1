import Glibc
import Synchronization
import GunnCore
import GunnIO

/// One accepted connection, confined to its event loop's thread: reads, parses (pipelined requests
/// answered in order), dispatches to the router, writes, enforces the deadlines, and after an
/// upgrade carries a WebSocket. Every close that follows an error is a lingering close (our side
/// shut down, the peer's bytes drained until it closes or `closeTimeout`), so the error response is
/// not lost to a reset.
final class HTTPConnection {
    unowned let server: HTTPServer
    let ctx: LoopContext
    let transport: Transport
    let remote: String
    var fd: Int32 { transport.fd }
    private let counted: Bool
    private var config: HTTPServerConfiguration { server.configuration }

    enum Mode { case http, webSocket, lingering(until: Double), closed }
    private(set) var mode: Mode = .http

    // Input
    private var parser: HTTPRequestParser
    private var input: [UInt8] = []
    private var inputOffset = 0
    private var current: HTTPRequestHead?
    private var currentBody: [UInt8] = []
    private var parsingDone = false  // after an error, a Connection: close, an upgrade, or EOF
    private var peerClosed = false

    enum Phase { case idle(since: Double), head(since: Double), body(started: Double, last: Double) }
    private var phase: Phase

    // Responses, in request order.
    enum SlotState {
        case waiting(since: Double)
        case ready(HTTPResponse)
        case streaming(StreamSlot)
        case upgrade(WebSocketEndpoint, HTTPRequest, HTTPResponse, String?)
    }
    final class StreamSlot {
        var headWritten = false
        var pending: [UInt8] = []
        var finished = false
        var status: Int
        var headers: HTTPHeaders
        init(status: Int, headers: HTTPHeaders) { self.status = status; self.headers = headers }
    }
    struct Slot {
        let id: UInt64
        let isHead: Bool
        let keepAlive: Bool
        /// 0 for an HTTP/1.0 request: no chunked framing (a stream ends with the connection).
        var minor: Int = 1
        var state: SlotState
        /// For `onResponse`: the route pattern (or what happened instead), the method, when it began.
        var route = ""
        var method = ""
        var started = 0.0
    }
    private var slots: [Slot] = []
    private var nextSlot: UInt64 = 1
    private var closeAfterFlush = false

    // Output
    private var out: [UInt8] = []
    private var outOffset = 0
    private var lastWriteProgress: Double
    private var readWantsWrite = false
    private var writeWantsRead = false

    // WebSocket
    private var session: WebSocketSession?
    private(set) var socket: WebSocket?
    private var wsCloseDeadline: Double?
    /// A close frame is queued (ours or our reply): nothing more may be sent. Set in event order,
    /// so messages that arrived before a peer's close are still echoed.
    private var wsClosing = false
    /// When the peer last sent anything, and whether our keepalive ping is unanswered.
    private var lastReceived: Double = 0
    private var pingOutstanding = false

    private var processing = false
    private var again = false
    private var continueOwed = false
    /// True while nothing is queued for the peer: the write deadline starts when output appears.
    private var outIdle = true
    /// The most bytes this connection ever had queued for its peer (published when it closes).
    private var outHighWater = 0

    init(server: HTTPServer, ctx: LoopContext, transport: Transport, remote: String, counted: Bool = true) {
        self.server = server
        self.ctx = ctx
        self.transport = transport
        self.remote = remote
        self.counted = counted
        parser = HTTPRequestParser(limits: server.configuration.limits)
        let now = EventLoop.now()
        phase = .idle(since: now)
        lastWriteProgress = now
    }

    var outPending: Int { out.count - outOffset }

    func start() {
        ctx.loop.register(fd, events: Int16(POLLIN)) { [unowned self] revents in self.onEvents(revents) }
    }

    /// Over the connection cap: answer `response` and close.
    func refuse(_ response: HTTPResponse) {
        start()
        parsingDone = true
        append(response, isHead: false, close: true)
        closeAfterFlush = true
        flushAndUpdate()
    }

    // MARK: events

    private func onEvents(_ revents: Int16) {
        if revents & Int16(POLLOUT) != 0 || (writeWantsRead && revents & Int16(POLLIN) != 0) {
            writeWantsRead = false
            flushAndUpdate()
            if case .closed = mode { return }
        }
        if revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 || readWantsWrite && revents & Int16(POLLOUT) != 0 {
            readWantsWrite = false
            readAvailable()
        }
    }

    private var wantsRead: Bool {
        switch mode {
        case .closed: return false
        case .lingering: return true
        case .webSocket: return !(session?.finished ?? true) && outPending < config.maxOutboundBytes
        case .http:
            if peerClosed || parsingDone { return false }
            return slots.count < config.maxPipelined && outPending < config.maxOutboundBytes && input.count - inputOffset < 64 << 10
        }
    }

    private func readAvailable() {
        var rounds = 0
        while wantsRead && rounds < 16 {
            rounds += 1
            switch transport.read(ctx.readBuffer) {
            case .done(let n):
                received(UnsafeMutableRawBufferPointer(rebasing: ctx.readBuffer[0..<n]))
                if case .closed = mode { return }
                // A short read emptied the socket: skip the read that would only say EAGAIN
                // (poll reports the next bytes; TLS records already decrypted are checked below).
                if n < ctx.readBuffer.count { rounds = 16 }
            case .wouldBlock(let ww):
                readWantsWrite = ww
                updateEvents()
                return
            case .eof:
                endOfInput()
                return
            case .failed:
                abort()
                return
            }
        }
        if wantsRead && transport.hasBufferedInput {
            // TLS records already decrypted: poll would not report them.
            let me = Confined(self)
            ctx.loop.execute { me.value.readAvailable() }
        }
        updateEvents()
    }

    private func received(_ bytes: UnsafeMutableRawBufferPointer) {
        switch mode {
        case .lingering, .closed:
            return
        case .webSocket:
            lastReceived = EventLoop.now()
            pingOutstanding = false
            receiveWebSocket(bytes)
        case .http:
            let now = EventLoop.now()
            if case .idle = phase { phase = .head(since: now) }
            if case .body(let started, _) = phase { phase = .body(started: started, last: now) }
            if inputOffset == input.count { input.removeAll(keepingCapacity: true); inputOffset = 0 }
            input.append(contentsOf: UnsafeRawBufferPointer(bytes))
            process()
        }
    }

    private func endOfInput() {
        peerClosed = true
        switch mode {
        case .lingering, .closed, .webSocket:
            abort()
        case .http:
            // Answer what was received in full (parsing may be paused with whole requests still
            // buffered), then close; a request cut off is dropped. A stream still open has no one
            // left to read it.
            if slots.contains(where: { if case .streaming = $0.state { return true } else { return false } }) { abort(); return }
            if slots.isEmpty && outPending == 0 && inputOffset >= input.count { abort(); return }
            process()
        }
    }

    /// After the peer's FIN: once every buffered byte is parsed, nothing more can come.
    private func finishInputAfterEOF() {
        guard peerClosed, !parsingDone, inputOffset >= input.count else { return }
        parsingDone = true
        current = nil
        closeAfterFlush = true
    }

    // MARK: the request/response pipeline

    private func process() {
        if processing { again = true; return }
        processing = true
        repeat {
            again = false
            parseAvailable()
            writeSlots()
            finishInputAfterEOF()
        } while again
        processing = false
        flushAndUpdate()
    }

    private var canParse: Bool {
        guard case .http = mode, !parsingDone else { return false }
        return slots.count < config.maxPipelined && outPending < config.maxOutboundBytes
    }

    private func parseAvailable() {
        while canParse && inputOffset < input.count {
            let consumed: Int
            do {
                consumed = try input.withUnsafeBytes { (all) throws(HTTPParseError) -> Int in
                    let rest = UnsafeRawBufferPointer(rebasing: all[inputOffset...])
                    return try parser.parse(rest) { event in self.parsed(event) }
                }
            } catch {
                server.count { $0.parseErrors += 1 }
                failRequest(error as? HTTPParseError ?? HTTPParseError(.internalError, "\(error)"))
                return
            }
            inputOffset += consumed
            // Answers ready now go to the output at once, so the output bound can pause parsing.
            writeSlots()
            if parser.isIdle && current == nil {
                // Between requests (a stray CRLF does not start a request's header deadline).
                if case .idle = phase {} else { phase = .idle(since: EventLoop.now()) }
            } else if case .idle = phase {
                phase = .head(since: EventLoop.now())
            }
        }
        // The consumed prefix is dropped, so the buffer holds at most what is not parsed yet.
        if inputOffset == input.count {
            input.removeAll(keepingCapacity: input.capacity <= 256 << 10)
            inputOffset = 0
        } else if inputOffset > 64 << 10 {
            input.removeFirst(inputOffset)
            inputOffset = 0
        }
    }

    private func parsed(_ event: HTTPParseEvent) {
        switch event {
        case .head(let h):
            current = h
            currentBody = []
            if h.framing != .none {
                let now = EventLoop.now()
                let started: Double
                if case .head(let since) = phase { started = since } else { started = now }
                phase = .body(started: started, last: now)
                if case .length(let n) = h.framing { currentBody.reserveCapacity(min(n, 64 << 10)) }
                // 100 Continue when no earlier response is still owed, else once they are out
                // (interim responses keep their order).
                if h.expectContinue {
                    if slots.isEmpty { out.appendASCII("HTTP/1.1 100 Continue\r\n\r\n") } else { continueOwed = true }
                }
            }
        case .body(let p):
            currentBody.append(contentsOf: p)
        case .end(let trailers):
            guard let head = current else { return }
            current = nil
            continueOwed = false
            phase = .idle(since: EventLoop.now())
            server.count { $0.requests += 1 }
            let request = HTTPRequest(head: head, body: currentBody, trailers: trailers, params: [:], remote: remote)
            currentBody = []
            dispatch(request)
        }
    }

    private func dispatch(_ request: HTTPRequest) {
        let head = request.head
        let id = nextSlot
        nextSlot += 1
        if !head.keepAlive { parsingDone = true }
        // Only a WebSocket upgrade is acted on; any other Upgrade (h2c …) is ignored (RFC 9110 §7.8).
        let wantsWebSocket = head.upgrade?.split(separator: ",").contains { trimOWS($0).lowercased() == "websocket" } ?? false
        let match = server.router.route(method: head.method, path: head.path, wantsUpgrade: wantsWebSocket)
        var slot = Slot(id: id, isHead: head.method == "HEAD", keepAlive: head.keepAlive, minor: head.minorVersion, state: .waiting(since: EventLoop.now()))
        slot.started = EventLoop.now()
        slot.method = Router.knownMethods.contains(head.method) ? head.method : "OTHER"
        switch match {
        case .handler(_, _, let pattern): slot.route = pattern
        case .webSocket: slot.route = "websocket"
        case .methodNotAllowed: slot.route = "method_not_allowed"
        case .notFound: slot.route = "not_found"
        case .notImplemented: slot.route = "not_implemented"
        }
        switch match {
        case .webSocket(let endpoint, let params):
            parsingDone = true
            var req = request
            req.params = params
            switch WebSocketHandshake.respond(to: head, endpoint: endpoint) {
            case .success(let (response, proto)):
                slot.state = .upgrade(endpoint, req, response, proto)
            case .failure(let e):
                var r = HTTPResponse.error(e)
                if e.status == 426 { r.headers.add("Sec-WebSocket-Version", "13") }
                slot.state = .ready(r)
                closeAfterFlushSlot(&slot)
            }
            slots.append(slot)
        case .handler(let handler, let params, _):
            var req = request
            req.params = params
            slots.append(slot)
            handler(req, HTTPResponder(connection: self, slot: id))
        case .methodNotAllowed(let allow):
            slot.state = .ready(.error(.methodNotAllowed, "\(head.method) is not allowed on \(head.path); allowed: \(allow.joined(separator: ", "))",
                                       headers: [("Allow", allow.joined(separator: ", "))]))
            slots.append(slot)
        case .notFound:
            slot.state = .ready(.error(.notFound, "no route for \(head.path)"))
            slots.append(slot)
        case .notImplemented:
            slot.state = .ready(.error(.notImplemented, "the method \(head.method) is not implemented"))
            slots.append(slot)
        }
        again = true
    }

    private func closeAfterFlushSlot(_ slot: inout Slot) {
        slot = Slot(id: slot.id, isHead: slot.isHead, keepAlive: false, minor: slot.minor, state: slot.state)
    }

    /// A request that cannot be parsed: its error is answered after the responses still owed, then
    /// the connection closes.
    private func failRequest(_ error: HTTPParseError) {
        parsingDone = true
        current = nil
        continueOwed = false
        var slot = Slot(id: nextSlot, isHead: false, keepAlive: false, state: .ready(.error(error)))
        slot.route = "unparsable"
        slot.started = EventLoop.now()
        nextSlot += 1
        slots.append(slot)
        again = true
    }

    /// Called through a responder.
    func complete(_ id: UInt64, _ response: HTTPResponse) {
        guard let i = slots.firstIndex(where: { $0.id == id }), case .waiting = slots[i].state else { return }
        slots[i].state = .ready(response)
        process()
    }

    func beginStream(_ id: UInt64, status: Int, headers: HTTPHeaders) -> Bool {
        guard let i = slots.firstIndex(where: { $0.id == id }), case .waiting = slots[i].state else { return false }
        slots[i].state = .streaming(StreamSlot(status: status, headers: headers))
        process()
        return true
    }

    enum Admission { case fits, shed, disconnect }

    /// Whether `bytes` more fit the outbound bound, else what `slowConsumer` says to do (counted).
    private func admit(_ bytes: Int) -> Admission {
        guard outPending + bytes > config.maxOutboundBytes else { return .fits }
        switch config.slowConsumer {
        case .shed:
            server.count { $0.shedMessages += 1 }
            return .shed
        case .disconnect:
            server.count { $0.slowConsumerCloses += 1 }
            return .disconnect
        }
    }

    enum StreamWrite { case written, shed, gone }

    /// Appends a chunk to a stream (and ends it with `finish`): `.shed` when the chunk was dropped
    /// under the slow-consumer policy (the stream goes on), `.gone` when the connection is closed.
    func streamWrite(_ id: UInt64, _ bytes: [UInt8], finish: Bool) -> StreamWrite {
        guard let slot = slots.first(where: { $0.id == id }), case .streaming(let s) = slot.state, !s.finished else { return .gone }
        if !bytes.isEmpty && !slot.isHead {
            switch admit(s.pending.count + bytes.count) {
            case .fits: break
            case .shed:
                if finish { s.finished = true; process() }
                return .shed
            case .disconnect: abort(); return .gone
            }
            if slot.minor == 1 { appendChunk(bytes, into: &s.pending) } else { s.pending.append(contentsOf: bytes) }
        }
        if finish { s.finished = true }
        process()
        return .written
    }

    private func appendChunk(_ bytes: [UInt8], into buf: inout [UInt8]) {
        buf.append(contentsOf: Array(String(bytes.count, radix: 16).utf8))
        buf.appendASCII("\r\n")
        buf.append(contentsOf: bytes)
        buf.appendASCII("\r\n")
    }

    private func writeSlots() {
        defer {
            if slots.isEmpty && continueOwed {
                continueOwed = false
                out.appendASCII("HTTP/1.1 100 Continue\r\n\r\n")
            }
        }
        while let first = slots.first {
            switch first.state {
            case .waiting:
                return
            case .ready(let response):
                slots.removeFirst()
                config.onResponse?(first.route, first.method, response.status, EventLoop.now() - first.started)
                let close = !first.keepAlive || (parsingDone && peerClosed && slots.isEmpty) || server.stopping.load(ordering: .relaxed)
                append(response, isHead: first.isHead, close: close, keepAlive10: first.minor == 0 && !close)
                if close {
                    closeAfterFlush = true
                    parsingDone = true
                    continueOwed = false
                    slots.removeAll()
                    return
                }
            case .streaming(let s):
                if !s.headWritten {
                    s.headWritten = true
                    serializeHead(status: s.status, headers: s.headers, contentLength: nil, chunked: !first.isHead && first.minor == 1,
                                  close: !first.keepAlive || first.minor == 0, serverName: server.serverNameBytes, date: ctx.date.current(), into: &out)
                }
                out.append(contentsOf: s.pending)
                s.pending.removeAll(keepingCapacity: true)
                guard s.finished else { return }
                if !first.isHead && first.minor == 1 { out.appendASCII("0\r\n\r\n") }
                slots.removeFirst()
                if !first.keepAlive || first.minor == 0 { closeAfterFlush = true; parsingDone = true; slots.removeAll(); return }
            case .upgrade(let endpoint, let request, let response, let proto):
                slots.removeFirst()
                upgrade(endpoint, request, response, proto)
                return
            }
        }
    }

    private func append(_ response: HTTPResponse, isHead: Bool, close: Bool, keepAlive10: Bool = false) {
        var response = response
        if response.status < 200 || response.status > 999 {
            // A handler may not send an interim or impossible status as its answer: it would desynchronise the client.
            response = .error(.internalError, "the handler answered with status \(response.status)")
        }
        let noBody = isHead || response.status == 204 || response.status == 304
        let length: Int? = (response.status == 204 || response.status == 304) ? nil : response.body.count
        serializeHead(status: response.status, headers: response.headers, contentLength: length, chunked: false, close: close,
                      keepAlive: keepAlive10, serverName: server.serverNameBytes, date: ctx.date.current(), into: &out)
        if !noBody { out.append(contentsOf: response.body) }
    }

    // MARK: output

    private func flushAndUpdate() {
        flush()
        if case .closed = mode { return }
        if closeAfterFlush && outPending == 0 && slots.isEmpty {
            closeAfterFlush = false
            beginLingeringClose()
            return
        }
        updateEvents()
    }

    private func flush() {
        if case .closed = mode { return }
        if outIdle && outPending > 0 {
            outIdle = false
            lastWriteProgress = EventLoop.now()
        }
        if outPending > outHighWater { outHighWater = outPending }
        while outOffset < out.count {
            let r = out.withUnsafeBytes { transport.write(UnsafeRawBufferPointer(rebasing: $0[outOffset...])) }
            switch r {
            case .done(let n):
                outOffset += n
                lastWriteProgress = EventLoop.now()
            case .wouldBlock(let ww):
                writeWantsRead = !ww
                compactOutput()
                return
            case .eof, .failed:
                abort()
                return
            }
        }
        compactOutput()
    }

    private func compactOutput() {
        if outOffset == out.count {
            if out.capacity > 1 << 20 { out = [] } else { out.removeAll(keepingCapacity: true) }
            outOffset = 0
            outIdle = true
        } else if outOffset > 1 << 20 && outOffset * 2 > out.count {
            out.removeFirst(outOffset)
            outOffset = 0
        }
    }

    private func updateEvents() {
        var events: Int16 = 0
        if wantsRead || writeWantsRead { events |= Int16(POLLIN) }
        if outPending > 0 || readWantsWrite { events |= Int16(POLLOUT) }
        if case .closed = mode { return }
        ctx.loop.setEvents(fd, events)
        // Parsing paused (pipelining or output bound) and now possible again.
        if canParse && inputOffset < input.count && !processing {
            let me = Confined(self)
            ctx.loop.execute { if case .http = me.value.mode { me.value.process() } }
        }
    }

    private func beginLingeringClose() {
        transport.shutdownWrite()
        mode = .lingering(until: EventLoop.now() + config.closeTimeout)
        input = []
        inputOffset = 0
        updateEvents()
    }

    /// Closes at once.
    func abort() {
        if case .closed = mode { return }
        let wasSocket = socket
        mode = .closed
        ctx.loop.deregister(fd)
        ctx.connections[fd] = nil
        transport.close()
        let hw = outHighWater
        server.count { $0.outboundHighWater = max($0.outboundHighWater, hw) }
        out = []
        outOffset = 0
        input = []
        inputOffset = 0
        if counted { server.open.subtract(1, ordering: .relaxed) } else { ctx.refusing -= 1 }
        slots.removeAll()
        if let wasSocket {
            socket = nil
            wasSocket.ended(code: 1006, reason: "the connection closed")
        }
    }

    // MARK: deadlines

    func checkDeadlines(_ now: Double) {
        switch mode {
        case .closed:
            return
        case .lingering(let until):
            if now >= until { abort() }
            return
        case .webSocket:
            if outPending > 0 && now - lastWriteProgress > config.writeTimeout {
                server.count { $0.timeouts += 1 }
                abort()
                return
            }
            if let d = wsCloseDeadline, now >= d { abort(); return }
            // Keepalive: a peer silent for an interval gets a ping; silent for another, it is gone
            // (a vanished peer sends no FIN).
            let quiet = now - lastReceived
            if quiet > 2 * config.webSocketPingInterval {
                server.count { $0.timeouts += 1 }
                abort()
            } else if quiet > config.webSocketPingInterval && !pingOutstanding && !wsClosing {
                pingOutstanding = true
                out.append(contentsOf: WebSocketFrameEncoder.frame(opcode: .ping, payload: Array("gunn".utf8)))
                flushAndUpdate()
            }
            return
        case .http:
            break
        }
        if outPending > 0 && now - lastWriteProgress > config.writeTimeout {
            server.count { $0.timeouts += 1 }
            abort()
            return
        }
        if let first = slots.first, case .waiting(let since) = first.state, now - since > config.handlerTimeout {
            complete(first.id, .error(.operationTimeout, "the handler did not answer within \(config.handlerTimeout) s"))
            return
        }
        // Request deadlines run only while the server is reading (not while it holds the client
        // back for its own pipelining or output bounds).
        guard !parsingDone, canParse, !continueOwed else { return }
        switch phase {
        case .head(let since) where now - since > config.headerTimeout:
            timeout("the request head did not arrive within \(config.headerTimeout) s")
        case .body(_, let last) where now - last > config.bodyTimeout:
            timeout("the body made no progress for \(config.bodyTimeout) s")
        case .body(let started, _) where now - started > config.requestTimeout:
            timeout("the request did not arrive in full within \(config.requestTimeout) s")
        case .idle(let since) where slots.isEmpty && outPending == 0 && now - max(since, lastWriteProgress) > config.idleTimeout:
            abort()
        default:
            break
        }
    }

    private func timeout(_ message: String) {
        server.count { $0.timeouts += 1 }
        failRequest(HTTPParseError(.requestTimeout, message))
        process()
    }

    // MARK: WebSocket

    private func upgrade(_ endpoint: WebSocketEndpoint, _ request: HTTPRequest, _ response: HTTPResponse, _ proto: String?) {
        var head: [UInt8] = []
        head.appendASCII("HTTP/1.1 101 Switching Protocols\r\nServer: ")
        head.append(contentsOf: server.serverNameBytes)
        head.appendASCII("\r\nConnection: Upgrade\r\n")
        for (name, value) in response.headers.fields {
            head.appendString(canonicalHeaderName(name))
            head.appendASCII(": ")
            head.appendString(value)
            head.appendASCII("\r\n")
        }
        head.appendASCII("\r\n")
        out.append(contentsOf: head)
        mode = .webSocket
        lastReceived = EventLoop.now()
        server.count { $0.webSockets += 1 }
        session = WebSocketSession(options: endpoint.options)
        let ws = WebSocket(connection: self, loop: ctx.loop, subprotocol: proto, remote: remote)
        socket = ws
        endpoint.onOpen(ws, request)
        // Frames that arrived in the same reads as the handshake.
        if inputOffset < input.count {
            var rest = Array(input[inputOffset...])
            input = []
            inputOffset = 0
            rest.withUnsafeMutableBytes { receiveWebSocket($0) }
        } else {
            input = []
            inputOffset = 0
        }
    }

    private func receiveWebSocket(_ bytes: UnsafeMutableRawBufferPointer) {
        guard var s = session else { return }
        var events: [WebSocketSessionEvent] = []
        s.receive(bytes) { events.append($0) }
        session = s
        for e in events { handle(e) }
        flushAndUpdate()
    }

    private func handle(_ e: WebSocketSessionEvent) {
        switch e {
        case .message(let op, let bytes):
            socket?.deliver(WebSocketMessage(isText: op == .text, bytes: bytes))
        case .send(let frame):
            out.append(contentsOf: frame)
        case .ping, .pong:
            break
        case .closed(let code, let reason, _):
            wsClosing = true
            // Our close is queued: close TCP (FIN) once it is out, then wait briefly for the peer's FIN.
            closeAfterFlush = true
            let ws = socket
            socket = nil
            ws?.ended(code: code, reason: reason)
        }
    }

    /// Queues a frame from the application; false when it was refused (closed, or over the bound).
    func sendFrame(_ opcode: WebSocketOpcode, _ payload: [UInt8]) -> Bool {
        guard case .webSocket = mode, session != nil, !wsClosing else { return false }
        switch admit(payload.count + 14) {
        case .fits: break
        case .shed: return false
        case .disconnect:
            closeWebSocket(code: WebSocketCloseCode.policyViolation, reason: "slow consumer: outbound queue full")
            return false
        }
        WebSocketFrameEncoder.appendHeader(opcode: opcode, length: payload.count, into: &out)
        out.append(contentsOf: payload)
        flushAndUpdate()
        return true
    }

    func closeWebSocket(code: UInt16, reason: String) {
        guard case .webSocket = mode, var s = session, !wsClosing, !s.closeSent else { return }
        wsClosing = true
        s.noteCloseSent()
        session = s
        out.append(contentsOf: WebSocketFrameEncoder.close(code: code, reason: reason))
        wsCloseDeadline = EventLoop.now() + config.closeTimeout
        flushAndUpdate()
    }
}

/// Answers one request: `respond` once (later calls are ignored), or `stream` a chunked body.
/// Callable from any thread; the work hops to the connection's event loop.
public final class HTTPResponder: @unchecked Sendable {
    // `@unchecked Sendable` is safe: `connection` is read and used only on `loop`'s thread (every
    // public method hops there first); `answered` is atomic.
    private weak var connection: HTTPConnection?
    private let loop: EventLoop
    private let slot: UInt64
    private let answered = Atomic<Bool>(false)
    let bound: Int

    init(connection: HTTPConnection, slot: UInt64) {
        self.connection = connection
        loop = connection.ctx.loop
        self.slot = slot
        bound = connection.server.configuration.maxOutboundBytes
    }

    private func onLoop(_ body: @escaping @Sendable () -> Void) {
        if loop.inLoop { body() } else { loop.execute(body) }
    }

    public func respond(_ response: HTTPResponse) {
        guard !answered.exchange(true, ordering: .acquiringAndReleasing) else { return }
        onLoop { self.connection?.complete(self.slot, response) }
    }

    /// Starts a chunked response (`Transfer-Encoding: chunked`); write its pieces to the stream.
    public func stream(status: Int = 200, headers: [(String, String)] = []) -> HTTPBodyStream {
        let s = HTTPBodyStream(responder: self, bound: bound)
        guard !answered.exchange(true, ordering: .acquiringAndReleasing) else { s.closed.store(true, ordering: .relaxed); return s }
        let h = HTTPHeaders(headers)
        onLoop { _ = self.connection?.beginStream(self.slot, status: status, headers: h) }
        return s
    }

    /// A server-sent event stream (text/event-stream), for clients that cannot use WebSocket.
    public func eventStream(headers: [(String, String)] = []) -> ServerSentEvents {
        ServerSentEvents(stream(status: 200, headers: [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")] + headers))
    }

    func write(_ bytes: [UInt8], finish: Bool, _ stream: HTTPBodyStream) {
        stream.inFlight.add(bytes.count, ordering: .relaxed)
        onLoop {
            stream.inFlight.subtract(bytes.count, ordering: .relaxed)
            guard let c = self.connection else { stream.closed.store(true, ordering: .relaxed); return }
            switch c.streamWrite(self.slot, bytes, finish: finish) {
            case .written: break
            case .shed: stream.shed.add(1, ordering: .relaxed)
            case .gone: stream.closed.store(true, ordering: .relaxed)
            }
        }
    }
}

/// The body of a streamed response. Writes after the peer went away (or was disconnected as a
/// slow consumer) are discarded and `isClosed` turns true; under `.shed` a write past the bound is
/// dropped and counted in `shedWrites`, and the stream goes on. Writes from other threads that the
/// loop has not taken yet count against the same bound, so a fast producer cannot queue without limit.
public final class HTTPBodyStream: Sendable {
    let responder: HTTPResponder
    let closed = Atomic<Bool>(false)
    let shed = Atomic<Int>(0)
    let inFlight = Atomic<Int>(0)
    let bound: Int
    init(responder: HTTPResponder, bound: Int) { self.responder = responder; self.bound = bound }

    public var isClosed: Bool { closed.load(ordering: .relaxed) }
    public var shedWrites: Int { shed.load(ordering: .relaxed) }

    public func write(_ bytes: [UInt8]) {
        guard !bytes.isEmpty, !isClosed else { return }
        if inFlight.load(ordering: .relaxed) + bytes.count > bound { shed.add(1, ordering: .relaxed); return }
        responder.write(bytes, finish: false, self)
    }
    public func write(_ text: String) { write(Array(text.utf8)) }
    /// Ends the body (the last chunk); always sent unless the connection is gone.
    public func finish() { if !isClosed { responder.write([], finish: true, self) } }
}

/// Server-sent events (the WHATWG EventSource format) over a chunked stream.
public final class ServerSentEvents: Sendable {
    public let stream: HTTPBodyStream
    init(_ stream: HTTPBodyStream) { self.stream = stream }

    public func send(data: String, event: String? = nil, id: String? = nil) {
        var text = ""
        if let event { text += "event: \(event.filter { $0 != "\n" && $0 != "\r" })\n" }
        if let id { text += "id: \(id.filter { $0 != "\n" && $0 != "\r" })\n" }
        for line in data.split(separator: "\n", omittingEmptySubsequences: false) { text += "data: \(line)\n" }
        text += "\n"
        stream.write(text)
    }

    public func comment(_ text: String) { stream.write(": \(text.filter { $0 != "\n" && $0 != "\r" })\n\n") }
    public func finish() { stream.finish() }
    public var isClosed: Bool { stream.isClosed }
}

/// A message received on a WebSocket (text already validated as UTF-8).
public struct WebSocketMessage: Sendable {
    public let isText: Bool
    public let bytes: [UInt8]
    public var text: String? { isText ? String(decoding: bytes, as: UTF8.self) : nil }
}

/// An accepted WebSocket. Set `onMessage` / `onClose` in the endpoint's `onOpen` (they run on the
/// event loop thread); `send` and `close` may be called from any thread.
public final class WebSocket: @unchecked Sendable {
    // `@unchecked Sendable` is safe: `connection` and the two handlers are touched only on `loop`'s
    // thread — the handlers' accessors trap elsewhere, and sends and closes hop there first.
    private weak var connection: HTTPConnection?
    private let loop: EventLoop
    public let subprotocol: String?
    public let remote: String
    private var messageHandler: ((WebSocketMessage) -> Void)?
    private var closeHandler: ((UInt16, String) -> Void)?
    /// Bytes sent from other threads that the loop has not queued yet (bounded like the queue).
    private let inFlight = Atomic<Int>(0)
    private let bound: Int
    private let policy: SlowConsumerPolicy

    /// Called on the event loop with each message. Set it on the loop (in `onOpen`): it traps elsewhere.
    public var onMessage: ((WebSocketMessage) -> Void)? {
        get { precondition(loop.inLoop, "WebSocket.onMessage is used on its event loop only"); return messageHandler }
        set { precondition(loop.inLoop, "WebSocket.onMessage is set on its event loop only (in onOpen)"); messageHandler = newValue }
    }
    /// Called on the event loop once, when the socket ends (with the close code, 1006 for a lost connection).
    public var onClose: ((UInt16, String) -> Void)? {
        get { precondition(loop.inLoop, "WebSocket.onClose is used on its event loop only"); return closeHandler }
        set { precondition(loop.inLoop, "WebSocket.onClose is set on its event loop only (in onOpen)"); closeHandler = newValue }
    }

    init(connection: HTTPConnection, loop: EventLoop, subprotocol: String?, remote: String) {
        self.connection = connection
        self.loop = loop
        self.subprotocol = subprotocol
        self.remote = remote
        bound = connection.server.configuration.maxOutboundBytes
        policy = connection.server.configuration.slowConsumer
    }

    func deliver(_ m: WebSocketMessage) { messageHandler?(m) }

    func ended(code: UInt16, reason: String) {
        let h = closeHandler
        closeHandler = nil
        messageHandler = nil
        h?(code, reason)
    }

    private func onLoop(_ body: @escaping @Sendable () -> Void) {
        if loop.inLoop { body() } else { loop.execute(body) }
    }

    public func send(text: String) { send(.text, Array(text.utf8)) }
    public func send(binary: [UInt8]) { send(.binary, binary) }
    /// Sends a message as one frame; from the loop thread the result says whether it was queued.
    /// From another thread the message is refused (false) when the bytes not yet taken by the loop
    /// would pass the outbound bound; under `.disconnect` the socket is then closed with 1008.
    @discardableResult
    public func send(_ opcode: WebSocketOpcode, _ payload: [UInt8]) -> Bool {
        if loop.inLoop { return connection?.sendFrame(opcode, payload) ?? false }
        let n = payload.count + 14
        if inFlight.add(n, ordering: .relaxed).newValue > bound {
            inFlight.subtract(n, ordering: .relaxed)
            if case .disconnect = policy { close(code: WebSocketCloseCode.policyViolation, reason: "slow consumer: outbound queue full") }
            return false
        }
        loop.execute {
            self.inFlight.subtract(n, ordering: .relaxed)
            _ = self.connection?.sendFrame(opcode, payload)
        }
        return true
    }

    public func close(code: UInt16 = WebSocketCloseCode.normal, reason: String = "") {
        onLoop { self.connection?.closeWebSocket(code: code, reason: reason) }
    }
}
