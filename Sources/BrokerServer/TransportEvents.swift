import CoreMetrics
import FedBrokerCore
import Foundation
import Logging
import NIOCore
import Synchronization

/// What the transport refuses or closes on its own (limits, timeouts, certificates, protocol
/// violations): each counted (docs/metrics.md) and logged, at most one line per kind per
/// `logInterval` seconds with the number left out since, the peer and the caller bounded and
/// escaped. Labels come from the closed sets below, never from what a peer sent.
final class TransportEvents: Sendable {
    /// Why the server closed (or refused) a connection: `fedbroker_connections_closed_total{reason}`.
    enum ConnectionClose: String, CaseIterable, Sendable {
        case serverConnectionLimit = "server_connection_limit"
        case callerConnectionLimit = "caller_connection_limit"
        case handshakeTimeout = "handshake_timeout"
        case handshakeFailed = "handshake_failed"
        case noIdentity = "no_identity"
        case ambiguousIdentity = "ambiguous_identity"
        case invalidIdentity = "invalid_identity"
        case revoked
        case unreadableCertificate = "unreadable_certificate"
        case prefaceTimeout = "preface_timeout"
        case badPreface = "bad_preface"
        case partialFrameTimeout = "partial_frame_timeout"
        case protocolError = "protocol_error"
        case idleTimeout = "idle_timeout"

        init(_ refusal: CallerCertificateRefusal.Code) {
            switch refusal {
            case .noIdentity: self = .noIdentity
            case .ambiguousIdentity: self = .ambiguousIdentity
            case .invalidIdentity: self = .invalidIdentity
            case .revoked: self = .revoked
            default: self = .unreadableCertificate
            }
        }

        /// An idle connection closing is routine: counted, logged at debug only.
        var level: Logger.Level { self == .idleTimeout ? .debug : .notice }
    }

    /// Why a request was refused before the service saw it: `fedbroker_streams_refused_total{reason}`.
    enum StreamRefusal: String, CaseIterable, Sendable {
        case streamLimit = "stream_limit"
        case callerRequestLimit = "caller_request_limit"
        case deadline
    }

    static let connectionsClosed = "fedbroker_connections_closed_total"
    static let streamsRefused = "fedbroker_streams_refused_total"
    static let connectionsOpen = "fedbroker_connections"
    static let tlsReloads = "fedbroker_tls_reloads_total"

    let logger: Logger
    let clock: any WallClock
    private let limit: Mutex<LogRateLimit>

    init(logger: Logger, clock: any WallClock = SystemWallClock(), logInterval: Double = 10) {
        self.logger = logger
        self.clock = clock
        self.limit = Mutex(LogRateLimit(interval: logInterval))
    }

    func closed(_ reason: ConnectionClose, peer: SocketAddress?, caller: CallerIdentity? = nil, detail: String) {
        Counter(label: Self.connectionsClosed, dimensions: [("reason", reason.rawValue)]).increment()
        log(reason.rawValue, level: reason.level, "connection closed by the server", peer: peer, caller: caller, detail: detail)
    }

    func refused(_ reason: StreamRefusal, peer: SocketAddress?, caller: CallerIdentity?, detail: String) {
        Counter(label: Self.streamsRefused, dimensions: [("reason", reason.rawValue)]).increment()
        log("stream." + reason.rawValue, level: .notice, "request refused by the transport", peer: peer, caller: caller, detail: detail)
    }

    func openConnections(_ count: Int) {
        Gauge(label: Self.connectionsOpen).record(count)
    }

    private func log(_ key: String, level: Logger.Level, _ message: Logger.Message, peer: SocketAddress?, caller: CallerIdentity?, detail: String) {
        guard logger.logLevel <= level, let suppressed = limit.withLock({ $0.admit(key, at: clock.now) }) else { return }
        var metadata: Logger.Metadata = [
            "fb.reason": "\(key)", "fb.detail": "\(BoundedText.escaped(detail, limit: 200))",
            "fb.peer": "\(peer.map { BoundedText.escaped("\($0)", limit: 64) } ?? "-")",
            "fb.notLoggedSince": "\(suppressed)",
        ]
        if let caller { metadata["fb.caller"] = "\(BoundedText.escaped(caller.description, limit: 200))" }
        logger.log(level: level, message, metadata: metadata)
    }
}
