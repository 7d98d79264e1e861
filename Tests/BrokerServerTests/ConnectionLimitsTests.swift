import BrokerClient
import BrokerServer
import BrokerWire
import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization
import Testing
import FedBrokerTestSupport

/// The transport's bounds over real sockets: the server's and each caller's connection caps,
/// each caller's requests in flight, a request's time, and idle connections.
@Suite struct ConnectionLimitsTests {
    /// Holds every KeyStatus for tenant "gated" until `release()`; answers anything else at once.
    final class GatedService: BrokerRequestHandler, Sendable {
        private let waiting = Mutex<[CheckedContinuation<Void, Never>]>([])
        private let released = Atomic<Bool>(false)

        func handle(_ request: WireRequest, caller: CallerIdentity, deadline: Date) async -> WireResponse {
            if request.keyStatus.tenant == "gated", !released.load(ordering: .relaxed) {
                await withCheckedContinuation { continuation in waiting.withLock { $0.append(continuation) } }
            }
            if request.keyStatus.tenant == "hang" {
                try? await Task.sleep(for: .seconds(60))  // until the transport's expiry cancels it
            }
            return .with { $0.status = .ok; $0.keyStatus = .with { $0.tenant = request.keyStatus.tenant; $0.state = caller.name } }
        }

        var waitingCount: Int { waiting.withLock { $0.count } }

        func release() {
            released.store(true, ordering: .relaxed)
            for continuation in waiting.withLock({ w in defer { w.removeAll() }; return w }) { continuation.resume() }
        }
    }

    func keyStatus(_ id: UInt32, tenant: String, timeoutMs: UInt32 = 0) throws -> Frame {
        try Frame(type: .request, streamID: id, message: WireRequest.with { $0.timeoutMs = timeoutMs; $0.keyStatus = .with { $0.tenant = tenant } })
    }

    /// Polls `condition` (bounded) until it holds.
    /// Polls `condition` until it holds. 60 s: these servers share the two event loops of
    /// `MultiThreadedEventLoopGroup.singleton` with every suite running in parallel, the
    /// 2,500-connection flood among them; on a loaded 2-core CI machine a close took over 20 s
    /// to be seen once. A bound, not a sleep: a passing run returns as soon as it holds.
    func eventually(within seconds: Double = 60, _ condition: () -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + .milliseconds(Int64(seconds * 1000))
        while !condition() {
            guard ContinuousClock.now < deadline else { return false }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return true
    }

    @Test("Over its caller's connection cap a connection gets GOAWAY(RESOURCE_EXHAUSTED, OVERLOADED, retry_after_ms) instead of SETTINGS; other callers are served")
    func callerConnectionCap() async throws {
        let pki = try LocalPKI()
        var configuration = BrokerTransportServer.Configuration.generousForTests()
        configuration.tls = try pki.serverTLS()
        configuration.perCaller.maximumConnections = 2
        let server = try await BrokerTransportServer.bind(configuration: configuration, service: GatedService(), logger: TransportTests.logger)
        let a = try NIOSSLContext(configuration: try pki.clientTLS(commonName: "a"))
        var held: [RawClient] = []
        for _ in 0..<2 {
            let client = try await RawClient.connect(port: server.port, context: a)
            try await client.send(ConnectionPreface.bytes())
            #expect(try await client.read(1).first?.type == .settings)
            held.append(client)
        }
        let third = try await RawClient.connect(port: server.port, context: a)
        try await third.send(ConnectionPreface.bytes())
        let frames = try await third.read(2)
        #expect(frames.map(\.type) == [.goAway])
        let goAway = try #require(try frames.first?.message(as: WireGoAway.self))
        #expect(goAway.lastStreamID == 0)
        #expect(goAway.status.code == .resourceExhausted && goAway.status.reason == .overloaded)
        #expect(goAway.status.retryable && goAway.status.retryAfterMs == 1000)

        let b = try await RawClient.connect(port: server.port, tls: try pki.clientTLS(commonName: "b"))
        try await b.send(ConnectionPreface.bytes())
        #expect(try await b.read(1).first?.type == .settings)

        // One of a's connections closes: a may connect again.
        try await held[0].channel.channel.close()
        let identity = CallerIdentity(name: LocalPKI.callerIdentity("a"))
        #expect(await eventually { server.admission.usage(of: identity).connections == 1 })
        let again = try await RawClient.connect(port: server.port, context: a)
        try await again.send(ConnectionPreface.bytes())
        #expect(try await again.read(1).first?.type == .settings)
        try await server.close()
    }

    @Test("Over the server's connection cap a new connection is closed at once, before any TLS work")
    func serverConnectionCap() async throws {
        var configuration = BrokerTransportServer.Configuration.generousForTests()
        configuration.maximumConnections = 2
        let server = try await BrokerTransportServer.bind(configuration: configuration, service: GatedService(), logger: TransportTests.logger)
        let first = try await PlainClient.connect(port: server.port)
        let second = try await PlainClient.connect(port: server.port)
        #expect(await eventually { server.openConnections == 2 })
        let third = try await PlainClient.connect(port: server.port)
        try await third.channel.closeFuture.get()  // closed by the server
        #expect(first.channel.isActive && second.channel.isActive)
        try await first.channel.close()
        #expect(await eventually { server.openConnections == 1 })
        let connection = try await BrokerConnection.connect(host: "127.0.0.1", port: server.port, tls: nil)
        #expect(try await connection.call(.with { $0.keyStatus = .with { $0.tenant = "t" } }, timeout: 60).keyStatus.tenant == "t")
        await connection.close()
        try await second.channel.close()
        try await server.close()
    }

    @Test("A caller's requests in flight are capped across its connections; over the cap a request is refused OVERLOADED with retry_after_ms; other callers are served")
    func callerRequestCap() async throws {
        let pki = try LocalPKI()
        var configuration = BrokerTransportServer.Configuration.generousForTests()
        configuration.tls = try pki.serverTLS()
        configuration.perCaller.maximumRequests = 2
        let service = GatedService()
        let server = try await BrokerTransportServer.bind(configuration: configuration, service: service, logger: TransportTests.logger)
        let a = try NIOSSLContext(configuration: try pki.clientTLS(commonName: "a"))
        let first = try await RawClient.connect(port: server.port, context: a)
        try await first.send(ConnectionPreface.bytes())
        try await first.send(try keyStatus(1, tenant: "gated"))
        try await first.send(try keyStatus(3, tenant: "gated"))
        #expect(try await first.read(1).first?.type == .settings)
        #expect(await eventually { service.waitingCount == 2 })
        // A third, on another connection of the same caller: refused at once.
        let second = try await RawClient.connect(port: server.port, context: a)
        try await second.send(ConnectionPreface.bytes())
        try await second.send(try keyStatus(1, tenant: "other"))
        let refused = try await second.read(2)
        #expect(refused.map(\.type) == [.settings, .response])
        let status = try #require(try refused.last?.message(as: WireResponse.self)).status
        #expect(status.code == .resourceExhausted && status.reason == .overloaded)
        #expect(status.retryable && status.retryAfterMs > 0)
        // Another caller is not held back by a's cap.
        let b = try await BrokerConnection.connect(host: "127.0.0.1", port: server.port, tls: try pki.clientTLS(commonName: "b"), serverHostname: "localhost")
        #expect(try await b.call(.with { $0.keyStatus = .with { $0.tenant = "other" } }, timeout: 60).keyStatus.state == LocalPKI.callerIdentity("b"))
        // Once a's calls are answered, a is served again.
        service.release()
        let answers = try await first.read(2)
        #expect(Set(answers.map(\.streamID)) == [1, 3])
        #expect(await eventually { server.admission.usage(of: CallerIdentity(name: LocalPKI.callerIdentity("a"))).requests == 0 })
        try await second.send(try keyStatus(3, tenant: "other"))
        #expect(try await second.read(1).first.map { try $0.message(as: WireResponse.self).status.code } == .ok)
        await b.close()
        try await server.close()
    }

    @Test("timeout_ms is enforced by the server (cut to its maximum): DEADLINE_EXCEEDED comes back and the work stops; an idle connection gets a graceful GOAWAY")
    func requestTimeAndIdleConnections() async throws {
        var configuration = BrokerTransportServer.Configuration.generousForTests()
        configuration.connection.maximumRequestTimeout = 0.3
        configuration.connection.idleTimeout = 1
        let service = GatedService()
        let server = try await BrokerTransportServer.bind(configuration: configuration, service: service, logger: TransportTests.logger)
        let client = try await PlainClient.connect(port: server.port)
        let frames = try await RawFrames.collect(on: client.channel)
        // Asks for ten minutes; the server's maximum is 0.3 s.
        try await client.send(ConnectionPreface.bytes() + Array(try RawFrames.encode(try keyStatus(1, tenant: "hang", timeoutMs: 600_000)).readableBytesView))
        let started = ContinuousClock.now
        #expect(await eventually { frames.count >= 2 })
        #expect(ContinuousClock.now - started < .seconds(120))  // the 0.3 s maximum, not the 10 minutes asked for
        let answer = try frames.all[1].message(as: WireResponse.self)
        #expect(answer.status.code == .deadlineExceeded && answer.status.retryable)
        #expect(await eventually { server.admission.usage(of: .unauthenticated).requests == 0 })  // its work was stopped
        // Nothing in flight now: after 1 s idle, GOAWAY(UNAVAILABLE, SHUTTING_DOWN, retryable) and the close.
        try await client.channel.closeFuture.get()
        let goAway = try #require(frames.all.last)
        #expect(goAway.type == .goAway)
        let status = try goAway.message(as: WireGoAway.self).status
        #expect(status.reason == .shuttingDown && status.retryable)
        #expect(try goAway.message(as: WireGoAway.self).lastStreamID == 1)
        try await server.close()
    }

    @Test("One timer per connection expires each request at its own time: a short timeout after a long one, and one after the timer fired")
    func shorterDeadlinesAfterLongerOnesExpireOnTime() async throws {
        let configuration = BrokerTransportServer.Configuration.generousForTests()
        let service = GatedService()
        let server = try await BrokerTransportServer.bind(configuration: configuration, service: service, logger: TransportTests.logger)
        let client = try await PlainClient.connect(port: server.port)
        let frames = try await RawFrames.collect(on: client.channel)
        func answered(_ streamID: UInt32) -> WireResponse? {
            frames.all.first { $0.type == .response && $0.streamID == streamID }.flatMap { try? $0.message(as: WireResponse.self) }
        }
        // Stream 1 (held by the service until released) asks for 100 s, so the connection's timer
        // is armed 100 s out; stream 3's 0.3 s must move it earlier, or stream 3 would be answered
        // only when stream 1 is.
        try await client.send(
            ConnectionPreface.bytes() + Array(try RawFrames.encode(try keyStatus(1, tenant: "gated", timeoutMs: 100_000)).readableBytesView)
                + Array(try RawFrames.encode(try keyStatus(3, tenant: "hang", timeoutMs: 300)).readableBytesView))
        #expect(await eventually { answered(3) != nil })
        #expect(answered(3)?.status.code == .deadlineExceeded)
        // The timer fired for stream 3 and was re-armed for stream 1; a new short request is
        // expired on its own time too.
        try await client.send(Array(try RawFrames.encode(try keyStatus(5, tenant: "hang", timeoutMs: 200)).readableBytesView))
        #expect(await eventually { answered(5) != nil })
        #expect(answered(5)?.status.code == .deadlineExceeded)
        // Stream 1 is still open, unanswered; the expired ones' work has stopped.
        #expect(answered(1) == nil)
        #expect(await eventually { server.admission.usage(of: .unauthenticated).requests == 1 })
        service.release()
        try await client.channel.close()
        try await server.close()
    }
}

/// Frames a plaintext client receives, collected as they come.
final class RawFrames: ChannelInboundHandler, Sendable {
    typealias InboundIn = Frame
    private let frames = Mutex<[Frame]>([])

    var all: [Frame] { frames.withLock { $0 } }
    var count: Int { frames.withLock { $0.count } }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        frames.withLock { $0.append(frame) }
    }

    static func collect(on channel: any Channel) async throws -> RawFrames {
        let collector = RawFrames()
        try await channel.eventLoop.submit {
            try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder(expectsPreface: false)))
            try channel.pipeline.syncOperations.addHandler(collector)
        }.get()
        return collector
    }

    static func encode(_ frame: Frame) throws -> ByteBuffer {
        var out = ByteBuffer()
        try FrameEncoder().encode(data: frame, out: &out)
        return out
    }
}
