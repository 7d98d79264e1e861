import BrokerWire
import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL

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

    private init(channel: any Channel) { self.channel = channel }

    public static func bind(configuration: Configuration, service: any BrokerRequestHandler, logger: Logger) async throws -> BrokerTransportServer {
        let sslContext = try configuration.tls.map { try NIOSSLContext(configuration: $0) }
        if sslContext == nil, !["127.0.0.1", "::1", "localhost"].contains(configuration.host) {
            throw BrokerTransportError.plaintextOffLoopback(configuration.host)
        }
        let maximumFrame = Int(configuration.connection.maximumFrameSize)
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
                }
            }
            .bind(host: configuration.host, port: configuration.port)
            .get()
        return BrokerTransportServer(channel: channel)
    }

    public func close() async throws {
        try await channel.close()
    }
}

public enum BrokerTransportError: Error, Equatable, CustomStringConvertible {
    case plaintextOffLoopback(String)
    public var description: String {
        switch self {
        case .plaintextOffLoopback(let host): "plaintext is allowed on loopback only, not on \(host): configure TLS"
        }
    }
}
