import Foundation
@testable import GunnIO
@testable import GunnWire

/// A test's own connection to a real orchestrator, below GunnClient: raw frames in and out.
enum RawOrchestratorClient {
    static func connect(home: String, role: String = "agent", world: String = "w1", name: String = "raw") async throws -> FramedConnection {
        try await FramedConnection.connect(path: home + "/run/orchestrator.sock", loop: EventLogProcessTests.loop,
                                           hello: Hello(protocolMajor: 1, protocolMinor: 0, role: role, worldID: world, clientName: name))
    }
}

extension FramedConnection {
    /// Sends one request and returns its reply (frames pushed meanwhile are passed over).
    func ask(_ body: Frame.Body, id: UInt64) async throws -> Frame {
        try await send(body, id: id)
        while let f = await receive() { if f.id == id { return f } }
        throw ConnectionError(.adapterUnavailable, "closed before the reply to \(id)")
    }
}
