import AzureEmulator
import BrokerClient
import BrokerServer
import BrokerWire
import Crypto
import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import SwiftASN1
import SwiftProtobuf
import Testing
import X509
import FedBrokerTestSupport

/// Answers Health with the caller's name, so tests see who the server thinks is calling.
struct EchoCallerService: BrokerRequestHandler {
    func handle(_ request: WireRequest, caller: CallerIdentity, deadline: Date) async -> WireResponse {
        .with {
            $0.status = .ok
            $0.health = .with { $0.status = "SERVING"; $0.serverVersion = caller.name }
        }
    }
}

/// A raw client: sends bytes, reads frames. No client library, so tests can misbehave.
final class RawClient {
    let channel: NIOAsyncChannel<Frame, ByteBuffer>
    private var iterator: NIOAsyncChannelInboundStream<Frame>.AsyncIterator

    init(channel: NIOAsyncChannel<Frame, ByteBuffer>) {
        self.channel = channel
        self.iterator = channel.inbound.makeAsyncIterator()
    }

    deinit {
        channel.outbound.finish()
        channel.channel.close(promise: nil)
    }

    static func connect(port: Int, tls: TLSConfiguration) async throws -> RawClient {
        try await connect(port: port, context: try NIOSSLContext(configuration: tls))
    }

    /// With a context made once: many connections, one client certificate.
    static func connect(port: Int, context: NIOSSLContext) async throws -> RawClient {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connect(host: "127.0.0.1", port: port) { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: "localhost"))
                try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder(expectsPreface: false)))
                return try NIOAsyncChannel<Frame, ByteBuffer>(wrappingChannelSynchronously: channel)
            }
        }
        return RawClient(channel: channel)
    }

    func send(_ bytes: [UInt8]) async throws { try await channel.outbound.write(ByteBuffer(bytes: bytes)) }

    func send(_ frame: Frame) async throws {
        var out = ByteBuffer()
        try FrameEncoder().encode(data: frame, out: &out)
        try await channel.outbound.write(out)
    }

    /// Reads frames until `count` arrived or the server closed (then fewer come back).
    func read(_ count: Int) async throws -> [Frame] {
        var frames: [Frame] = []
        while frames.count < count, let frame = try await iterator.next() { frames.append(frame) }
        return frames
    }
}

@Suite struct TransportTests {
    static let logger = Logger(label: "transport-test")

    func withServer(_ body: (Int, LocalPKI) async throws -> Void) async throws {
        let pki = try LocalPKI()
        var configuration = BrokerTransportServer.Configuration.generousForTests()
        configuration.tls = try pki.serverTLS()
        configuration.connection.maximumConcurrentStreams = 4
        let server = try await BrokerTransportServer.bind(configuration: configuration, service: EchoCallerService(), logger: Self.logger)
        do {
            try await body(server.port, pki)
        } catch {
            try? await server.close()
            throw error
        }
        try await server.close()
    }

    @Test func mutualTLSCallerGetsSettingsAndAnswers() async throws {
        try await withServer { port, pki in
            let client = try await RawClient.connect(port: port, tls: try pki.clientTLS(commonName: "orders-service"))
            try await client.send(ConnectionPreface.bytes())
            for id in stride(from: UInt32(1), through: 5, by: 2) {
                try await client.send(try Frame(type: .request, streamID: id, message: WireRequest.with { $0.health = .init() }))
            }
            let frames = try await client.read(4)
            #expect(frames.first?.type == .settings)
            #expect(try frames.first?.message(as: WireSettings.self).maxConcurrentStreams == 4)
            let responses = try frames.dropFirst().map { try $0.message(as: WireResponse.self) }
            #expect(responses.count == 3)
            // The identity is the certificate's URI SAN, not its CN.
            #expect(responses.allSatisfy { $0.status.code == .ok && $0.health.serverVersion == LocalPKI.callerIdentity("orders-service") })
            #expect(Set(frames.dropFirst().map(\.streamID)) == [1, 3, 5])
            try await client.channel.channel.close()
        }
    }

    @Test func badInputGetsItsAnswerAndOthersKeepBeingServed() async throws {
        try await withServer { port, pki in
            // Garbage protobuf on a stream: refused on that stream, the connection lives on.
            let client = try await RawClient.connect(port: port, tls: try pki.clientTLS(commonName: "a"))
            try await client.send(ConnectionPreface.bytes())
            try await client.send(Frame(type: .request, streamID: 1, payload: ByteBuffer(bytes: [0xff, 0xff, 0xff])))
            try await client.send(try Frame(type: .request, streamID: 3, message: WireRequest.with { $0.health = .init() }))
            let frames = try await client.read(3)
            #expect(try frames[1].message(as: WireResponse.self).status.code == .invalidArgument)
            #expect(try frames[2].message(as: WireResponse.self).status.code == .ok)

            // A bad preface: not our protocol, so nothing in our framing (no SETTINGS, no GOAWAY), just the close.
            let rude = try await RawClient.connect(port: port, tls: try pki.clientTLS(commonName: "b"))
            try await rude.send(Array("GET / HTTP/1.1\r\n\r\n".utf8))
            #expect(try await rude.read(5).isEmpty)
            try await rude.channel.channel.closeFuture.get()

            // Our magic with another version: GOAWAY(UNIMPLEMENTED) naming ours, and no SETTINGS.
            let future = try await RawClient.connect(port: port, tls: try pki.clientTLS(commonName: "b"))
            try await future.send(ConnectionPreface.bytes(version: 2))
            let futureFrames = try await future.read(5)
            #expect(futureFrames.map(\.type) == [.goAway])
            #expect(try futureFrames.first?.message(as: WireGoAway.self).status.code == .unimplemented)

            // An unknown frame type: GOAWAY(PROTOCOL_ERROR), then close.
            let odd = try await RawClient.connect(port: port, tls: try pki.clientTLS(commonName: "c"))
            try await odd.send(ConnectionPreface.bytes() + [0, 0, 0, 0, 0x42, 0, 0, 0, 0, 1])
            let oddFrames = try await odd.read(5)
            let goAway = try #require(oddFrames.last)
            #expect(goAway.type == .goAway)
            #expect(try goAway.message(as: WireGoAway.self).status.reason == .protocolError)

            // The first connection is still served.
            try await client.send(try Frame(type: .request, streamID: 5, message: WireRequest.with { $0.health = .init() }))
            #expect(try await client.read(1).first?.streamID == 5)
            try await client.channel.channel.close()
        }
    }

    @Test func aClientWithoutACertificateIsRefused() async throws {
        try await withServer { port, pki in
            // The handshake fails (TLS 1.3: after the client's Finished, so its connect succeeds):
            // no SETTINGS, no frame at all ever arrives.
            #expect(await CallerCertificateTests.served(port: port, tls: try pki.clientTLS(commonName: nil)) == false)
            // The server still serves a client with a certificate.
            let known = try await RawClient.connect(port: port, tls: try pki.clientTLS(commonName: "known"))
            try await known.send(ConnectionPreface.bytes())
            #expect(try await known.read(1).first?.type == .settings)
        }
    }
}

@Suite struct ClientServerTests {
    /// Answers Health after a delay given in the request's timeout (to test deadlines and ordering).
    struct SlowService: BrokerRequestHandler {
        func handle(_ request: WireRequest, caller: CallerIdentity, deadline: Date) async -> WireResponse {
            if request.keyStatus.tenant == "slow" {
                try? await Task.sleep(for: .seconds(30))  // cancelled by the client's CANCEL long before
            }
            if request.keyStatus.tenant == "unknown" {
                return .failure(.failure(.notFound, .tenantUnknown, "no tenant named unknown"))
            }
            return .with { $0.status = .ok; $0.keyStatus = .with { $0.tenant = request.keyStatus.tenant; $0.state = caller.name } }
        }
    }

    @Test func multiplexedCallsDeadlinesAndStatusesOverMutualTLS() async throws {
        let pki = try LocalPKI()
        var configuration = BrokerTransportServer.Configuration.generousForTests()
        configuration.tls = try pki.serverTLS()
        let server = try await BrokerTransportServer.bind(configuration: configuration, service: SlowService(), logger: TransportTests.logger)
        let connection = try await BrokerConnection.connect(host: "127.0.0.1", port: server.port, tls: try pki.clientTLS(commonName: "billing"), serverHostname: "localhost")

        // 50 concurrent calls on one connection, answered out of order, each to its own caller.
        let tenants = (0..<50).map { "tenant-\($0)" }
        let answers = try await withThrowingTaskGroup(of: (String, String).self) { group in
            for tenant in tenants {
                group.addTask {
                    let r = try await connection.call(.with { $0.keyStatus = .with { $0.tenant = tenant } }, timeout: 60)
                    return (r.keyStatus.tenant, r.keyStatus.state)
                }
            }
            return try await group.reduce(into: [String: String]()) { $0[$1.0] = $1.1 }
        }
        #expect(answers.count == 50)
        #expect(answers.allSatisfy { $0.value == LocalPKI.callerIdentity("billing") })

        // A failure status comes back typed, with its reason.
        await #expect(throws: BrokerCallError.status(.failure(.notFound, .tenantUnknown, "no tenant named unknown"))) {
            _ = try await connection.call(.with { $0.keyStatus = .with { $0.tenant = "unknown" } }, timeout: 60)
        }

        // A call past its deadline fails as such, and the connection keeps serving.
        await #expect(throws: BrokerCallError.deadlineExceeded) {
            _ = try await connection.call(.with { $0.keyStatus = .with { $0.tenant = "slow" } }, timeout: 0.2)
        }
        let after = try await connection.call(.with { $0.keyStatus = .with { $0.tenant = "after" } }, timeout: 60)
        #expect(after.keyStatus.tenant == "after")

        await connection.close()
        await #expect(throws: BrokerCallError.connectionUnavailable) {
            _ = try await connection.call(.with { $0.health = .init() }, timeout: 1)
        }
        try await server.close()
    }
}

@Suite struct FedBrokerClientTests {
    /// Overloaded for the first two calls of each tenant, then answers.
    final class FlakyService: BrokerRequestHandler, Sendable {
        private let calls = Synchronization.Mutex<[String: Int]>([:])
        func handle(_ request: WireRequest, caller: CallerIdentity, deadline: Date) async -> WireResponse {
            let tenant = request.keyStatus.tenant
            let n = calls.withLock { c -> Int in c[tenant, default: 0] += 1; return c[tenant]! }
            if tenant.hasPrefix("flaky"), n <= 2 {
                return .failure(.failure(.unavailable, .vaultThrottled, "the vault is throttling", retryable: true, retryAfterMilliseconds: 10))
            }
            if tenant == "revoked" {
                return .failure(.failure(.permissionDenied, .accessRevokedByCustomer, "the customer removed the role"))
            }
            return .with { $0.status = .ok; $0.keyStatus = .with { $0.tenant = tenant; $0.state = "active" } }
        }
        func count(_ tenant: String) -> Int { calls.withLock { $0[tenant] ?? 0 } }
    }

    @Test func retriesRetryableStatusesAndReturnsTheRestAtOnce() async throws {
        let pki = try LocalPKI()
        var configuration = BrokerTransportServer.Configuration.generousForTests()
        configuration.tls = try pki.serverTLS()
        let service = FlakyService()
        let server = try await BrokerTransportServer.bind(configuration: configuration, service: service, logger: TransportTests.logger)
        let client = FedBrokerClient(configuration: .init(host: "127.0.0.1", port: server.port, tls: try pki.clientTLS(commonName: "svc"), serverHostname: "localhost"))

        // Deadlines are generous: a fully parallel suite on 2 cores can take seconds to connect.
        let ok = try await client.keyStatus(tenant: "flaky-1", deadline: Date().addingTimeInterval(120))
        #expect(ok.keyStatus.state == "active")
        #expect(service.count("flaky-1") == 3)  // two throttled answers, retried

        await #expect(throws: BrokerCallError.status(.failure(.permissionDenied, .accessRevokedByCustomer, "the customer removed the role"))) {
            _ = try await client.keyStatus(tenant: "revoked", deadline: Date().addingTimeInterval(120))
        }
        #expect(service.count("revoked") == 1)  // a revocation is never retried

        // A deadline too short for the retries: the last failure, not a hang.
        // Which of the two depends on whether the deadline passes before or after the first answer.
        let late = await #expect(throws: BrokerCallError.self) {
            _ = try await client.keyStatus(tenant: "flaky-2", deadline: Date().addingTimeInterval(0.005))
        }
        #expect(late == .deadlineExceeded || late?.wireStatus?.reason == .vaultThrottled, "\(String(describing: late))")
        await client.close()
        try await server.close()
    }
}

import Synchronization

/// Plaintext (loopback) connections for volume tests: the point is connection count, not TLS.
struct PlainClient {
    let channel: any Channel

    static func connect(port: Int) async throws -> PlainClient {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connect(host: "127.0.0.1", port: port).get()
        return PlainClient(channel: channel)
    }

    func send(_ bytes: [UInt8]) async throws { try await channel.writeAndFlush(ByteBuffer(bytes: bytes)) }
}

@Suite struct RobustnessTests {
    func withPlainServer(_ body: (Int) async throws -> Void) async throws {
        var configuration = BrokerTransportServer.Configuration.generousForTests()
        configuration.tls = nil  // loopback only
        configuration.connection.maximumFrameSize = 64 * 1024
        let server = try await BrokerTransportServer.bind(configuration: configuration, service: EchoCallerService(), logger: TransportTests.logger)
        do { try await body(server.port) } catch {
            try? await server.close()
            throw error
        }
        try await server.close()
    }

    func healthy(_ port: Int) async throws -> Bool {
        let connection = try await BrokerConnection.connect(host: "127.0.0.1", port: port, tls: nil)
        defer { Task { await connection.close() } }
        // Served, against never: a bound well apart from both. At the start of a full run on 2
        // cores a Health call here has taken over 10 s (a clean-clone CI run failed on it).
        let response = try await connection.call(.with { $0.health = .init() }, timeout: 60)
        return response.health.status == "SERVING"
    }

    @Test func plaintextIsRefusedOffLoopback() async throws {
        var configuration = BrokerTransportServer.Configuration.generousForTests()
        configuration.host = "0.0.0.0"
        await #expect(throws: BrokerTransportError.plaintextOffLoopback("0.0.0.0")) {
            _ = try await BrokerTransportServer.bind(configuration: configuration, service: EchoCallerService(), logger: TransportTests.logger)
        }
    }

    @Test func oversizedTruncatedAndAbandonedFramesHurtNobodyElse() async throws {
        try await withPlainServer { port in
            // Announces a 2 GiB frame: refused from the header, nothing buffered.
            let huge = try await PlainClient.connect(port: port)
            try await huge.send(ConnectionPreface.bytes() + [0x7f, 0xff, 0xff, 0xff, 0x01, 0, 0, 0, 0, 1])
            // Half a frame, then the client vanishes.
            let truncated = try await PlainClient.connect(port: port)
            try await truncated.send(ConnectionPreface.bytes() + [0, 0, 0, 40, 0x01, 0, 0, 0, 0, 1, 1, 2, 3])
            try await truncated.channel.close()
            #expect(try await healthy(port))
            try await huge.channel.closeFuture.get()  // the server closed it
        }
    }

    @Test("The client library refuses a request over the server's max_frame_size before sending it: a precise, final status, and the connection and its other calls live on")
    func theClientKeepsToTheServersFrameSize() async throws {
        try await withPlainServer { port in
            let connection = try await BrokerConnection.connect(host: "127.0.0.1", port: port, tls: nil)
            defer { Task { await connection.close() } }
            let big = WireRequest.with { $0.unwrap = .with { $0.blob = Data(repeating: 1, count: 100 * 1024) } }
            for _ in 0..<2 {  // the first may be queued until SETTINGS, the second finds the connection ready
                let refused = await #expect(throws: BrokerCallError.self) { _ = try await connection.call(big, timeout: 60) }
                #expect(refused?.wireStatus?.code == .invalidArgument, "\(String(describing: refused))")
                #expect(refused?.wireStatus?.retryable == false)
                #expect(refused?.wireStatus?.message.contains("at most 65536 bytes") == true)
            }
            // Had the frame gone out, the server would have closed this connection (GOAWAY).
            let answer = try await connection.call(.with { $0.health = .init() }, timeout: 60)
            #expect(answer.health.status == "SERVING")
            // The pool: a final status at once, not retried until the deadline; and a pool size of
            // 0 is one connection, not a division by zero.
            var configuration = FedBrokerClient.Configuration(host: "127.0.0.1", port: port, tls: nil)
            configuration.connections = 0
            let client = FedBrokerClient(configuration: configuration)
            let refused = await #expect(throws: BrokerCallError.self) {
                _ = try await client.unwrap([UInt8](repeating: 1, count: 100 * 1024), deadline: Date().addingTimeInterval(120))
            }
            #expect(refused?.wireStatus?.code == .invalidArgument)
            #expect(try await client.health(deadline: Date().addingTimeInterval(120)) == "SERVING")
            await client.close()
        }
    }

    @Test func aClientThatStopsReadingHurtsNobodyElse() async throws {
        try await withPlainServer { port in
            // A client that floods requests and never reads an answer.
            let flooder = try await PlainClient.connect(port: port)
            try await flooder.channel.setOption(ChannelOptions.autoRead, value: false).get()
            var flood = ConnectionPreface.bytes()
            let request = try Frame(type: .request, streamID: 1, message: WireRequest.with { $0.health = .init() })
            for id in stride(from: UInt32(1), through: 20_000, by: 2) {
                var frame = request
                frame.streamID = id
                var buffer = ByteBuffer()
                try FrameEncoder().encode(data: frame, out: &buffer)
                flood += Array(buffer.readableBytesView)
            }
            try await flooder.send(flood)
            // Everyone else is still served promptly.
            for _ in 0..<5 { #expect(try await healthy(port)) }
            try await flooder.channel.close()
        }
    }

    /// Waits (bounded) until every channel is closed; the channels still open when time is up.
    static func stillOpen(_ channels: [any Channel], within seconds: Double) async -> [any Channel] {
        let deadline = ContinuousClock.now + .milliseconds(Int64(seconds * 1000))
        var open = channels
        while !open.isEmpty, ContinuousClock.now < deadline {
            open = open.filter(\.isActive)
            if !open.isEmpty { try? await Task.sleep(for: .milliseconds(50)) }  // a bounded poll of channel state
        }
        return open.filter(\.isActive)
    }

    @Test("2,000 connections that never send a ClientHello and 500 that stop inside a frame header are closed within the timeouts, while a new mTLS client is served throughout")
    func aFloodOfSilentAndStalledConnectionsIsClosed() async throws {
        let pki = try LocalPKI()
        var configuration = BrokerTransportServer.Configuration.generousForTests()
        configuration.tls = try pki.serverTLS()
        // 5 s, not less: the steady caller's and the stalling clients' own handshakes must finish
        // within it while the full suite starts on two cores (at 2 s a steady handshake timed out).
        configuration.handshakeTimeout = 5
        configuration.connection.prefaceTimeout = 5
        configuration.connection.partialFrameTimeout = 1
        configuration.perCaller.maximumConnections = 1_000
        let server = try await BrokerTransportServer.bind(configuration: configuration, service: EchoCallerService(), logger: TransportTests.logger)
        let port = server.port
        let steadyTLS = try pki.clientTLS(commonName: "steady")
        let flooding = Synchronization.Atomic<Bool>(true)
        defer { flooding.store(false, ordering: .relaxed) }

        // A well-behaved caller: a fresh connection and a call, over and over, for as long as the flood lasts.
        let steady = Task { () throws -> Int in
            var served = 0
            repeat {
                let connection = try await BrokerConnection.connect(host: "127.0.0.1", port: port, tls: steadyTLS, serverHostname: "localhost")
                let answer = try await connection.call(.with { $0.health = .init() }, timeout: 30)
                #expect(answer.health.serverVersion == LocalPKI.callerIdentity("steady"))
                await connection.close()
                served += 1
            } while flooding.load(ordering: .relaxed)
            return served
        }

        // 2,000 raw TCP connections that never send a byte: no ClientHello, so no TLS work for the server.
        var silent: [any Channel] = []
        for _ in 0..<2_000 {
            silent.append(try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connect(host: "127.0.0.1", port: port).get())
        }
        // 500 mTLS connections that complete TLS and the preface (SETTINGS came back), then send
        // 5 bytes of a 10-byte frame header and nothing more.
        let context = try NIOSSLContext(configuration: try pki.clientTLS(commonName: "stalling"))
        var stalled: [RawClient] = []
        for _ in 0..<500 {
            let client = try await RawClient.connect(port: port, context: context)
            try await client.send(ConnectionPreface.bytes())
            #expect(try await client.read(1).first?.type == .settings)
            try await client.send([0, 0, 0, 20, 0x01])
            stalled.append(client)
        }

        // Every one of them is closed by the server: 5 s of handshake or 1 s of partial-frame
        // timeout each, with room for a loaded 2-core machine, and none is left.
        let silentLeft = await Self.stillOpen(silent, within: 30)
        let stalledLeft = await Self.stillOpen(stalled.map(\.channel.channel), within: 30)
        #expect(silentLeft.count == 0, "silent connections were not closed")
        #expect(stalledLeft.count == 0, "stalled connections were not closed")
        // Each stalled one was told why: GOAWAY(DEADLINE_EXCEEDED, PROTOCOL_ERROR), then the close.
        var told = 0
        for client in stalled where !client.channel.channel.isActive {
            let frames = try await client.read(2)
            if frames.count == 1, let goAway = try? frames[0].message(as: WireGoAway.self),
                goAway.status.code == .deadlineExceeded, goAway.status.reason == .protocolError
            {
                told += 1
            }
        }
        #expect(told == stalled.count)

        flooding.store(false, ordering: .relaxed)
        #expect(try await steady.value >= 1)  // served throughout: no call failed
        for channel in silent { try? await channel.close() }
        try await server.close()
    }
}

/// A call that runs until the server cancels it, telling when it started and when it was cancelled.
final class UntilCancelledService: BrokerRequestHandler, Sendable {
    let events: AsyncStream<String>
    private let sink: AsyncStream<String>.Continuation
    init() { (events, sink) = AsyncStream.makeStream(of: String.self) }

    func handle(_ request: WireRequest, caller: CallerIdentity, deadline: Date) async -> WireResponse {
        sink.yield("started")
        let (nothing, held) = AsyncStream<Void>.makeStream()
        await withTaskCancellationHandler {
            for await _ in nothing {}  // yields nothing; ends when the task is cancelled
        } onCancel: {
            self.sink.yield("cancelled")
        }
        held.finish()
        return .failure(.failure(.internal, .unspecified, "unreachable"))
    }
}

@Suite struct ClientCancellationTests {
    @Test("A caller whose task is cancelled sends CANCEL at once: the server's work stops, and the call ends in CancellationError, not at its deadline",
          .timeLimit(.minutes(1)))
    func cancellingTheCallingTaskCancelsTheServersWork() async throws {
        var configuration = BrokerTransportServer.Configuration.generousForTests()
        configuration.tls = nil
        let service = UntilCancelledService()
        let server = try await BrokerTransportServer.bind(configuration: configuration, service: service, logger: TransportTests.logger)
        let client = FedBrokerClient(configuration: .init(host: "127.0.0.1", port: server.port, tls: nil))
        var events = service.events.makeAsyncIterator()
        let call = Task { try await client.keyStatus(tenant: "slow", deadline: Date().addingTimeInterval(3600)) }
        #expect(await events.next() == "started")
        call.cancel()
        // Without CANCEL the server's work would run until the one-hour deadline, and so would this.
        #expect(await events.next() == "cancelled")
        let result = await call.result
        #expect(throws: CancellationError.self) { try result.get() }
        await client.close()
        try await server.close()
    }
}

@Suite struct DrainTests {
    /// Signals when a call starts, and answers once `release` is resumed.
    final class GatedService: BrokerRequestHandler, Sendable {
        let started: AsyncStream<Void>
        private let startedSink: AsyncStream<Void>.Continuation
        private let gate = Synchronization.Mutex<CheckedContinuation<Void, Never>?>(nil)

        init() { (started, startedSink) = AsyncStream.makeStream(of: Void.self) }

        func handle(_ request: WireRequest, caller: CallerIdentity, deadline: Date) async -> WireResponse {
            if request.keyStatus.tenant == "gated" {
                await withCheckedContinuation { continuation in
                    gate.withLock { $0 = continuation }
                    startedSink.yield()
                }
            }
            return .with { $0.status = .ok; $0.keyStatus = .with { $0.tenant = request.keyStatus.tenant } }
        }

        func release() { gate.withLock { $0.take() }?.resume() }
    }

    @Test func drainLetsInFlightCallsFinishAndRefusesNewOnes() async throws {
        let pki = try LocalPKI()
        var configuration = BrokerTransportServer.Configuration.generousForTests()
        configuration.tls = try pki.serverTLS()
        let service = GatedService()
        let server = try await BrokerTransportServer.bind(configuration: configuration, service: service, logger: TransportTests.logger)
        let connection = try await BrokerConnection.connect(host: "127.0.0.1", port: server.port, tls: try pki.clientTLS(commonName: "x"), serverHostname: "localhost")
        let inFlight = Task { try await connection.call(.with { $0.keyStatus = .with { $0.tenant = "gated" } }, timeout: 30) }
        var iterator = service.started.makeAsyncIterator()
        _ = await iterator.next()  // the call is running on the server

        let draining = Task { await server.drain(timeout: 30) }
        // New calls on the draining connection are refused (retryable), the in-flight one finishes.
        var refused = false
        for _ in 0..<200 where !refused {
            do {
                _ = try await connection.call(.with { $0.keyStatus = .with { $0.tenant = "new" } }, timeout: 5)
                await Task.yield()
            } catch BrokerCallError.status(let status) {
                refused = status.reason == .shuttingDown && status.retryable
            } catch BrokerCallError.connectionUnavailable {
                refused = true
            }
        }
        #expect(refused)
        service.release()
        let answer = try await inFlight.value
        #expect(answer.keyStatus.tenant == "gated")
        await draining.value
        #expect(server.openConnections == 0)
    }
}
