import BrokerWire
import FedBrokerCore
import Foundation
import NIOCore
import NIOSSL
import Synchronization
import SwiftProtobuf

/// What internal services link: `try await client.unwrap(blob, deadline:)`. A small pool of
/// multiplexed connections, deadlines carried to the server, retryable statuses (overload,
/// throttled vault, draining server, dropped connection) retried with backoff inside the
/// deadline; everything else returned at once as `BrokerCallError.status` with its reason.
public final class FedBrokerClient: Sendable {
    public struct Configuration: Sendable {
        public var host: String
        public var port: Int
        /// mTLS: the client certificate is the caller's identity. nil only for loopback plaintext.
        public var tls: TLSConfiguration?
        public var serverHostname: String?
        public var connections = 2
        public var backoff = Backoff(initial: 0.05, maximum: 2, maxRetries: 8)

        public init(host: String, port: Int, tls: TLSConfiguration?, serverHostname: String? = nil) {
            self.host = host
            self.port = port
            self.tls = tls
            self.serverHostname = serverHostname
        }
    }

    public let configuration: Configuration
    private let clock: any WallClock
    private let pool = Mutex<[BrokerConnection?]>([])
    private let nextIndex = Mutex(0)
    /// `configuration.connections`, at least 1: 0 or a negative count still gets one connection.
    private let poolSize: Int

    public init(configuration: Configuration, clock: any WallClock = SystemWallClock()) {
        self.configuration = configuration
        self.clock = clock
        self.poolSize = max(1, configuration.connections)
        pool.withLock { [poolSize] in $0 = Array(repeating: nil, count: poolSize) }
    }

    // MARK: Methods

    public func generateDataKey(tenant: String, context: [UInt8]? = nil, deadline: Date) async throws -> (plaintext: [UInt8], blob: [UInt8], keyID: String) {
        let r = try await call(.with { $0.generateDataKey = .with { $0.tenant = tenant; if let context { $0.context = Data(context) } } }, deadline: deadline)
        return (Array(r.generateDataKey.plaintext), Array(r.generateDataKey.blob), r.generateDataKey.keyID)
    }

    public func wrap(tenant: String, plaintext: [UInt8], context: [UInt8]? = nil, deadline: Date) async throws -> [UInt8] {
        Array(try await call(.with { $0.wrap = .with { $0.tenant = tenant; $0.plaintext = Data(plaintext); if let context { $0.context = Data(context) } } }, deadline: deadline).wrap.blob)
    }

    public func unwrap(_ blob: [UInt8], context: [UInt8]? = nil, deadline: Date) async throws -> [UInt8] {
        Array(try await call(.with { $0.unwrap = .with { $0.blob = Data(blob); if let context { $0.context = Data(context) } } }, deadline: deadline).unwrap.plaintext)
    }

    public func rewrap(_ blob: [UInt8], context: [UInt8]? = nil, deadline: Date) async throws -> [UInt8] {
        Array(try await call(.with { $0.rewrap = .with { $0.blob = Data(blob); if let context { $0.context = Data(context) } } }, deadline: deadline).rewrap.blob)
    }

    public func keyStatus(tenant: String, deadline: Date) async throws -> WireResponse {
        try await call(.with { $0.keyStatus = .with { $0.tenant = tenant } }, deadline: deadline)
    }

    public func health(deadline: Date) async throws -> String {
        try await call(.with { $0.health = .init() }, deadline: deadline).health.status
    }

    public func close() async {
        let connections = pool.withLock { p -> [BrokerConnection] in
            defer { p = p.map { _ in nil } }
            return p.compactMap { $0 }
        }
        for connection in connections { await connection.close() }
    }

    // MARK: The call loop

    /// One call with retries of retryable failures, inside `deadline`.
    public func call(_ request: WireRequest, deadline: Date) async throws -> WireResponse {
        var attempt = 0
        while true {
            let remaining = clock.remaining(until: deadline)
            guard remaining > 0 else { throw BrokerCallError.deadlineExceeded }
            let failure: BrokerCallError
            var retryAfter: Double?
            do {
                let connection = try await connection(within: remaining)
                do {
                    return try await connection.call(request, timeout: remaining)
                } catch let error as BrokerCallError {
                    if error == .connectionUnavailable { forget(connection) }
                    throw error
                }
            } catch let error as BrokerCallError {
                failure = error
                switch error {
                case .status(let status):
                    guard status.retryable else { throw error }
                    if status.retryAfterMs > 0 { retryAfter = Double(status.retryAfterMs) / 1000 }
                case .streamLimitReached, .connectionUnavailable: break
                case .deadlineExceeded: throw error
                }
            } catch let error as CancellationError {
                throw error  // the caller gave up: no retry
            } catch {
                // Could not connect: retryable like a dropped connection.
                failure = .connectionUnavailable
            }
            attempt += 1
            switch configuration.backoff.decision(
                afterAttempt: attempt, retryAfter: retryAfter, jitter: Double.random(in: 0..<1), now: clock.now, deadline: deadline)
            {
            case .retry(let delay): try await clock.sleep(seconds: delay)
            case .giveUp: throw failure
            }
        }
    }

    /// A live connection, round-robin over the pool, (re)connecting empty places.
    /// `within`: the call's remaining time, which bounds a new connection's TCP connect too (NIO's
    /// default is 10 s, longer than most calls' deadlines when the broker's address black-holes SYNs).
    private func connection(within remaining: Double) async throws -> BrokerConnection {
        let index = nextIndex.withLock { i -> Int in
            defer { i = (i + 1) % poolSize }
            return i
        }
        // A connection the server closed (idle, drained) is replaced here rather than failing a call first.
        if let existing = pool.withLock({ $0[index] }), existing.channel.isActive { return existing }
        let fresh = try await BrokerConnection.connect(
            host: configuration.host, port: configuration.port, tls: configuration.tls, serverHostname: configuration.serverHostname,
            connectTimeout: .milliseconds(Int64(max(1, min(10_000, remaining * 1000)))))
        let winner = pool.withLock { p -> BrokerConnection in
            if let raced = p[index], raced.channel.isActive { return raced }
            p[index] = fresh
            return fresh
        }
        if winner !== fresh { await fresh.close() }
        return winner
    }

    private func forget(_ connection: BrokerConnection) {
        pool.withLock { p in
            for i in p.indices where p[i] === connection { p[i] = nil }
        }
    }
}
