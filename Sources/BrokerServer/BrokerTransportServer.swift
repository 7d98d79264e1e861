import BrokerWire
import FedBrokerCore
import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization

/// The listening side of the protocol: a NIO server with TLS (client certificates required)
/// whose connections each get a frame decoder, encoder and `ServerConnectionHandler`.
public final class BrokerTransportServer: Sendable {
    public struct Configuration: Sendable {
        public var host = "127.0.0.1"
        public var port = 0
        /// nil: plaintext, accepted only on a loopback address.
        public var tls: TLSConfiguration?
        public var connection = ServerConnectionStateMachine.Configuration()
        /// For requests that carry no timeout.
        public var defaultRequestTimeout: Double = 10
        public var serverVersion = "fedbroker"
        public init() {}
    }

    public let channel: any Channel
    public var port: Int { channel.localAddress?.port ?? 0 }
    private let connections: ConnectionRegistry

    private init(channel: any Channel, connections: ConnectionRegistry) {
        self.channel = channel
        self.connections = connections
    }

    public static func bind(configuration: Configuration, service: any BrokerRequestHandler, logger: Logger) async throws -> BrokerTransportServer {
        let sslContext = try configuration.tls.map { try NIOSSLContext(configuration: $0) }
        if sslContext == nil, !LoopbackHost.contains(configuration.host) {
            throw BrokerTransportError.plaintextOffLoopback(configuration.host)
        }
        let maximumFrame = Int(configuration.connection.maximumFrameSize)
        let connections = ConnectionRegistry()
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(.backlog, value: 1024)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let ops = channel.pipeline.syncOperations
                    if let sslContext { try ops.addHandler(NIOSSLServerHandler(context: sslContext)) }
                    try ops.addHandler(ByteToMessageHandler(FrameDecoder(maximumPayloadLength: maximumFrame, expectsPreface: true)))
                    try ops.addHandler(MessageToByteHandler(FrameEncoder()))
                    try ops.addHandler(ServerConnectionHandler(
                        configuration: configuration.connection, service: service, serverVersion: configuration.serverVersion,
                        defaultTimeout: configuration.defaultRequestTimeout, logger: logger))
                    connections.add(channel)
                }
            }
            .bind(host: configuration.host, port: configuration.port)
            .get()
        return BrokerTransportServer(channel: channel, connections: connections)
    }

    /// Graceful shutdown: stop accepting, send GOAWAY on every connection, let in-flight calls
    /// finish (each connection closes after its last answer), and close what is left after
    /// `timeout` seconds.
    public func drain(timeout: Double) async {
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
        try await channel.close()
        for connection in connections.all { try? await connection.close() }
    }

    /// Open connections, for drain.
    public var openConnections: Int { connections.all.count }
}

/// The server's open connections, removed as they close.
final class ConnectionRegistry: Sendable {
    private let channels = Synchronization.Mutex<[ObjectIdentifier: any Channel]>([:])

    func add(_ channel: any Channel) {
        let id = ObjectIdentifier(channel)
        channels.withLock { $0[id] = channel }
        channel.closeFuture.whenComplete { [self] _ in _ = channels.withLock { $0.removeValue(forKey: id) } }
    }

    var all: [any Channel] { channels.withLock { Array($0.values) } }
}

public enum BrokerTransportError: Error, Equatable, CustomStringConvertible {
    case plaintextOffLoopback(String)
    public var description: String {
        switch self {
        case .plaintextOffLoopback(let host): "plaintext is allowed on loopback only, not on \(host): configure TLS"
        }
    }
}
