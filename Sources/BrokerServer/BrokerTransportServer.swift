import BrokerWire
import CoreMetrics
import FedBrokerCore
import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import SwiftASN1
import Synchronization
import X509

/// The listening side of the protocol: a NIO server with TLS (client certificates required)
/// whose connections each get a `ServerConnectionHandler`.
///
/// It bounds what a peer can hold before and after authenticating: connections in all, the TLS
/// handshake's time, and per caller connections and requests in flight; the connection's own
/// timers (preface, partial frame, idle) are `ServerConnectionStateMachine`'s.
public final class BrokerTransportServer: Sendable {
    public struct Configuration: Sendable {
        public var host = "127.0.0.1"
        public var port = 0
        /// Fixed TLS (tests, embedders); nil with no `tlsFiles`: plaintext, accepted only on a
        /// loopback address.
        public var tls: TLSConfiguration?
        /// TLS read from files and reloaded when they change, with an optional CRL (`serve`);
        /// takes precedence over `tls`.
        public var tlsFiles: ServerTLSFiles?
        /// Where a caller's identity comes from in its certificate.
        public var callerIdentity = CallerIdentitySource.uriOrSubject
        public var connection = ServerConnectionStateMachine.Configuration()
        /// Seconds from TCP accept until the TLS handshake must be done.
        public var handshakeTimeout: Double = 10
        /// Connections open at once, from every peer, authenticated or not; one more is closed
        /// as soon as it is accepted. Keep it under the process's file descriptor limit.
        public var maximumConnections = 10_000
        public var perCaller = CallerAdmission.Limits()
        /// `retry_after_ms` of the GOAWAY a connection over its caller's cap gets.
        public var callerConnectionRetryAfterMilliseconds: UInt32 = 1000
        /// For requests that carry no timeout.
        public var defaultRequestTimeout: Double {
            get { connection.defaultRequestTimeout }
            set { connection.defaultRequestTimeout = newValue }
        }
        public var serverVersion = "fedbroker"
        public init() {}
    }

    public let channel: any Channel
    public var port: Int { channel.localAddress?.port ?? 0 }
    private let connections: ConnectionRegistry
    private let reloading: Task<Void, Never>?
    private let material: ServerTLSMaterial?
    /// The per-caller counts (connections, requests in flight), for tests and diagnostics.
    public let admission: CallerAdmission

    private init(
        channel: any Channel, connections: ConnectionRegistry, admission: CallerAdmission, material: ServerTLSMaterial?, reloading: Task<Void, Never>?
    ) {
        self.channel = channel
        self.connections = connections
        self.admission = admission
        self.material = material
        self.reloading = reloading
    }

    /// Why the TLS files last failed to reload (the previous ones stay in use), until they load.
    public var tlsReloadFailure: String? { material?.lastFailure }

    public static func bind(configuration: Configuration, service: any BrokerRequestHandler, logger: Logger) async throws -> BrokerTransportServer {
        let material: ServerTLSMaterial?
        if let files = configuration.tlsFiles {
            material = try ServerTLSMaterial(files: files)
        } else {
            material = try configuration.tls.map { try ServerTLSMaterial(fixed: $0) }
        }
        if material == nil, !LoopbackHost.contains(configuration.host) {
            throw BrokerTransportError.plaintextOffLoopback(configuration.host)
        }
        let events = TransportEvents(logger: logger)
        let admission = CallerAdmission(limits: configuration.perCaller)
        let connections = ConnectionRegistry(limit: configuration.maximumConnections, events: events)
        let identitySource = configuration.callerIdentity
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(.backlog, value: 1024)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    // Over the cap: closed before any TLS work is spent on it.
                    guard connections.add(channel) else {
                        events.closed(
                            .serverConnectionLimit, peer: channel.remoteAddress,
                            detail: "\(configuration.maximumConnections) connections are open (server.maxConnections)")
                        channel.close(promise: nil)
                        return
                    }
                    let handler = ServerConnectionHandler(
                        configuration: configuration, secure: material != nil, service: service, admission: admission, events: events,
                        logger: logger)
                    let ops = channel.pipeline.syncOperations
                    if let snapshot = material?.snapshot {
                        // Runs at the handshake, after the TLS library verified the chain: the
                        // caller's identity and the CRL. A refusal fails the handshake, so no
                        // byte of the protocol is read from a certificate that proves nobody.
                        let verify: _NIOAdditionalPeerCertificateVerificationCallback = { certificate, channel in
                            channel.eventLoop.makeCompletedFuture {
                                let identity = try Self.verify(certificate, source: identitySource, crl: snapshot.crl)
                                handler.callerVerified(identity)
                            }
                        }
                        try ops.addHandler(NIOSSLServerHandler._makeSSLServerHandler(context: snapshot.context, additionalPeerCertificateVerificationCallback: verify))
                    }
                    try ops.addHandler(handler)
                }
            }
            .bind(host: configuration.host, port: configuration.port)
            .get()
        let reloading = material.flatMap { material in
            material.files.flatMap { files in files.reloadSeconds > 0 ? Self.reloadLoop(material, every: files.reloadSeconds, logger: logger) : nil }
        }
        return BrokerTransportServer(channel: channel, connections: connections, admission: admission, material: material, reloading: reloading)
    }

    /// The identity `certificate` proves, unless its CA revoked it.
    static func verify(_ certificate: NIOSSLCertificate, source: CallerIdentitySource, crl: CertificateRevocationList?) throws -> CallerIdentity {
        let parsed: Certificate
        do {
            parsed = try Certificate(derEncoded: try certificate.toDERBytes())
        } catch {
            throw CallerCertificateRefusal(.unreadable, "it cannot be parsed")
        }
        if let crl, crl.isRevoked(parsed) {
            throw CallerCertificateRefusal(
                .revoked, "serial \(parsed.serialNumber) of \(BoundedText.escaped(parsed.issuer.rfc4514String, limit: 120)) is on its CRL")
        }
        return try source.identity(of: parsed)
    }

    /// Reads the TLS files again every `seconds`, for the life of the listener.
    private static func reloadLoop(_ material: ServerTLSMaterial, every seconds: Double, logger: Logger) -> Task<Void, Never> {
        Task {
            var failing: String?  // the failure last logged, until the files load or are undone
            var warnedExpiredCRL = false
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(Int64(seconds * 1000)))
                guard !Task.isCancelled else { return }
                switch material.reload() {
                case .unchanged:
                    break
                case .reloaded:
                    failing = nil
                    warnedExpiredCRL = false
                    Counter(label: TransportEvents.tlsReloads, dimensions: [("outcome", "reloaded")]).increment()
                    let crl = material.snapshot.crl
                    logger.notice(
                        "TLS files changed: new connections use the new certificate, key, client CA and CRL",
                        metadata: ["fb.crlRevoked": "\(crl?.revokedCount ?? 0)"])
                case .reverted:
                    failing = nil
                    logger.notice("TLS files are back to the ones in use; the change that did not load is gone")
                case .failed(let reason):
                    Counter(label: TransportEvents.tlsReloads, dimensions: [("outcome", "failed")]).increment()
                    // Once per failure, not once per poll (a different failure is said again);
                    // the old material stays in use.
                    if failing != reason {
                        logger.error("TLS files changed but do not load; the previous ones stay in use", metadata: ["fb.error": "\(reason)"])
                    }
                    failing = reason
                }
                if !warnedExpiredCRL, let expired = material.snapshot.crl?.expired(at: Date()) {
                    // Said once until the files change again.
                    logger.warning("the CRL's nextUpdate has passed; publish a fresh one (it is still applied)", metadata: ["fb.nextUpdate": "\(expired)"])
                    warnedExpiredCRL = true
                }
            }
        }
    }

    /// Graceful shutdown: stop accepting, send GOAWAY on every connection, let in-flight calls
    /// finish (each connection closes after its last answer), and close what is left after
    /// `timeout` seconds.
    public func drain(timeout: Double) async {
        reloading?.cancel()
        try? await channel.close()
        let open = connections.all
        for connection in open {
            connection.eventLoop.execute {
                (try? connection.pipeline.syncOperations.handler(type: ServerConnectionHandler.self))?.drain()
            }
        }
        await withTaskGroup(of: Void.self) { group in
            for connection in open {
                group.addTask {
                    let closed = Task { try? await connection.closeFuture.get() }
                    let timer = Task {
                        try? await Task.sleep(for: .milliseconds(Int64(timeout * 1000)))
                        try? await connection.close()
                    }
                    await closed.value
                    timer.cancel()
                }
            }
        }
    }

    public func close() async throws {
        reloading?.cancel()
        try await channel.close()
        for connection in connections.all { try? await connection.close() }
    }

    /// Open connections, for drain.
    public var openConnections: Int { connections.all.count }
}

/// The server's open connections, removed as they close, at most `limit` at once.
final class ConnectionRegistry: Sendable {
    private let channels = Synchronization.Mutex<[ObjectIdentifier: any Channel]>([:])
    let limit: Int
    let events: TransportEvents

    init(limit: Int, events: TransportEvents) {
        self.limit = limit
        self.events = events
    }

    /// Registers `channel` unless `limit` connections are open.
    func add(_ channel: any Channel) -> Bool {
        let id = ObjectIdentifier(channel)
        let count = channels.withLock { channels -> Int? in
            guard channels.count < limit else { return nil }
            channels[id] = channel
            return channels.count
        }
        guard let count else { return false }
        events.openConnections(count)
        channel.closeFuture.whenComplete { [self] _ in
            let left = channels.withLock { channels -> Int in
                channels.removeValue(forKey: id)
                return channels.count
            }
            events.openConnections(left)
        }
        return true
    }

    var all: [any Channel] { channels.withLock { Array($0.values) } }
}

public enum BrokerTransportError: Error, Equatable, CustomStringConvertible {
    case plaintextOffLoopback(String)
    /// A TLS file (`key` names its setting) cannot be used.
    case invalidTLSFile(key: String, path: String, reason: String)

    public var description: String {
        switch self {
        case .plaintextOffLoopback(let host): "plaintext is allowed on loopback only, not on \(host): configure TLS"
        case .invalidTLSFile(let key, let path, let reason): "\(key) \(BoundedText.escaped(path, limit: 200)): \(reason)"
        }
    }
}
