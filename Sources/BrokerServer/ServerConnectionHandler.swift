import BrokerWire
import Foundation
import Logging
import NIOCore
import NIOSSL
import SwiftProtobuf
import NIOTLS
import SwiftASN1
import X509

/// Who is calling: the subject of the client certificate the TLS handshake verified.
public struct CallerIdentity: Sendable, Hashable, CustomStringConvertible {
    /// The certificate subject's common name (the caller's configured identity).
    public var commonName: String
    public init(commonName: String) { self.commonName = commonName }
    public var description: String { "CN=\(commonName)" }
    /// Plaintext connections (loopback only, when configured so) carry this identity.
    public static let unauthenticated = CallerIdentity(commonName: "")
}

/// What the transport hands each request to: the broker's service logic.
public protocol BrokerRequestHandler: Sendable {
    func handle(_ request: WireRequest, caller: CallerIdentity, deadline: Date) async -> WireResponse
}

/// One connection: drives `ServerConnectionStateMachine` with the frames the decoder produces
/// and runs each request as its own task, so slow calls never block the connection and answers
/// go out as they finish. It decides nothing itself.
final class ServerConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = Frame
    typealias OutboundIn = Frame
    typealias OutboundOut = Frame

    private var machine: ServerConnectionStateMachine
    private let service: any BrokerRequestHandler
    private let serverVersion: String
    private let defaultTimeout: Double
    private let logger: Logger
    private var tasks: [UInt32: Task<Void, Never>] = [:]
    private var caller: CallerIdentity?
    private var closing = false

    init(configuration: ServerConnectionStateMachine.Configuration, service: any BrokerRequestHandler, serverVersion: String, defaultTimeout: Double, logger: Logger) {
        self.machine = ServerConnectionStateMachine(configuration: configuration)
        self.service = service
        self.serverVersion = serverVersion
        self.defaultTimeout = defaultTimeout
        self.logger = logger
    }

    func channelActive(context: ChannelHandlerContext) {
        run(machine.connectionStarted(serverVersion: serverVersion), context: context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        for task in tasks.values { task.cancel() }
        tasks.removeAll()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        run(machine.frameReceived(unwrapInboundIn(data)), context: context)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let wire = error as? WireError {
            logger.info("protocol violation, closing the connection", metadata: ["fb.error": "\(wire)", "fb.peer": "\(context.remoteAddress.map { "\($0)" } ?? "-")"])
            run(machine.decodingFailed(wire), context: context)
        } else if let decoderError = error as? ByteToMessageDecoderError, case .dataReceivedInErrorState(let inner, _) = decoderError, let wire = inner as? WireError {
            run(machine.decodingFailed(wire), context: context)
        } else {
            logger.debug("connection error", metadata: ["fb.error": "\(error)"])
            context.close(promise: nil)
        }
    }

    /// A client that stops reading: once its answers back up, stop reading its requests, so it
    /// cannot make the server buffer without bound; resume when it drains.
    func channelWritabilityChanged(context: ChannelHandlerContext) {
        context.channel.setOption(ChannelOptions.autoRead, value: context.channel.isWritable).whenFailure { _ in }
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .handshakeCompleted = event as? TLSUserEvent {
            caller = Self.callerIdentity(of: context.channel)
        }
        context.fireUserInboundEventTriggered(event)
    }

    private var context: ChannelHandlerContext?
    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    /// Graceful drain (server shutdown): GOAWAY, finish open streams, close. Runs on the event loop.
    func drain() {
        guard let context else { return }
        run(machine.drain(), context: context)
    }

    private func run(_ action: ServerConnectionStateMachine.Action, context: ChannelHandlerContext) {
        switch action {
        case .sendSettings(let settings):
            write(try? Frame(type: .settings, streamID: 0, message: settings), context: context, flush: true)
        case .dispatch(let streamID, let request):
            dispatch(streamID: streamID, request: request, context: context)
        case .refuse(let streamID, let status):
            write(try? Frame(type: .response, streamID: streamID, message: WireResponse.failure(status)), context: context, flush: true)
            run(machine.responseSent(streamID: streamID), context: context)
        case .cancel(let streamID):
            tasks.removeValue(forKey: streamID)?.cancel()
        case .sendPong(let payload):
            write(Frame(type: .ping, flags: .ack, streamID: 0, payload: payload), context: context, flush: true)
        case .sendGoAway(let goAway, let thenClose):
            write(try? Frame(type: .goAway, streamID: 0, message: goAway), context: context, flush: true)
            if thenClose { close(context: context) }
        case .close:
            close(context: context)
        case .none:
            break
        }
    }

    private func dispatch(streamID: UInt32, request: WireRequest, context: ChannelHandlerContext) {
        let timeout = request.timeoutMs > 0 ? Double(request.timeoutMs) / 1000 : defaultTimeout
        let deadline = Date().addingTimeInterval(timeout)
        let caller = self.caller ?? Self.callerIdentity(of: context.channel) ?? .unauthenticated
        let service = self.service
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        tasks[streamID] = Task {
            let response = await service.handle(request, caller: caller, deadline: deadline)
            eventLoop.execute {
                let (handler, context) = loopBound.value
                handler.finish(streamID: streamID, response: response, context: context)
            }
        }
    }

    private func finish(streamID: UInt32, response: WireResponse, context: ChannelHandlerContext) {
        // A cancelled stream was already forgotten: nothing is written on it.
        guard tasks.removeValue(forKey: streamID) != nil, !closing else { return }
        write(try? Frame(type: .response, streamID: streamID, message: response), context: context, flush: true)
        run(machine.responseSent(streamID: streamID), context: context)
    }

    private func write(_ frame: Frame?, context: ChannelHandlerContext, flush: Bool) {
        guard let frame, !closing else { return }
        context.write(wrapOutboundOut(frame), promise: nil)
        if flush { context.flush() }
    }

    private func close(context: ChannelHandlerContext) {
        guard !closing else { return }
        closing = true
        context.flush()
        context.close(promise: nil)
    }

    static func callerIdentity(of channel: any Channel) -> CallerIdentity? {
        guard let certificate = try? channel.pipeline.syncOperations.nioSSL_peerCertificate(),
            let der = try? certificate.toDERBytes(), let parsed = try? Certificate(derEncoded: der)
        else { return nil }
        let commonName = parsed.subject.flatMap { $0 }.first { $0.type == .RDNAttributeType.commonName }
        return commonName.map { CallerIdentity(commonName: String(describing: $0.value)) }
    }
}
