import BrokerWire
import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import SwiftProtobuf

/// Why a call got no answer from the broker.
public enum BrokerCallError: Error, Equatable, Sendable {
    /// The broker answered with a failure status (code, reason, message, retryable).
    case status(WireStatus)
    /// The caller's deadline passed; the stream was cancelled on the server.
    case deadlineExceeded
    /// The connection is at the server's concurrent-stream limit.
    case streamLimitReached
    /// The connection is closed or draining.
    case connectionUnavailable
}

/// One multiplexed connection to fedbroker: many calls in flight, answered out of order, each
/// bounded by its deadline (the stream is cancelled on the server when it passes). The protocol
/// rules are `ClientConnectionStateMachine`'s; this is the NIO driver around it.
public final class BrokerConnection: Sendable {
    let channel: any Channel
    private let handler: NIOLoopBound<ClientConnectionHandler>

    private init(channel: any Channel, handler: NIOLoopBound<ClientConnectionHandler>) {
        self.channel = channel
        self.handler = handler
    }

    /// Connects, sends the preface, and returns once the connection is set up (SETTINGS may
    /// still be in flight: calls made before it are queued, not refused).
    public static func connect(
        host: String, port: Int, tls: TLSConfiguration?, serverHostname: String? = nil, connectTimeout: TimeAmount = .seconds(10)
    ) async throws -> BrokerConnection {
        let sslContext = try tls.map { try NIOSSLContext(configuration: $0) }
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let ops = channel.pipeline.syncOperations
                    if let sslContext {
                        try ops.addHandler(NIOSSLClientHandler(context: sslContext, serverHostname: serverHostname ?? host))
                    }
                    try ops.addHandler(PrefaceWriter())
                    try ops.addHandler(ByteToMessageHandler(FrameDecoder(expectsPreface: false)))
                    try ops.addHandler(MessageToByteHandler(FrameEncoder()))
                    try ops.addHandler(ClientConnectionHandler())
                }
            }
            .connect(host: host, port: port)
            .get()
        let handler = try await channel.eventLoop.submit {
            NIOLoopBound(try channel.pipeline.syncOperations.handler(type: ClientConnectionHandler.self), eventLoop: channel.eventLoop)
        }.get()
        return BrokerConnection(channel: channel, handler: handler)
    }

    /// One call. Throws `BrokerCallError.status` for a failure status, so callers branch on
    /// `status.reason` and `status.retryable`.
    public func call(_ request: WireRequest, timeout: Double) async throws -> WireResponse {
        var stamped = request
        stamped.timeoutMs = UInt32(max(1, min(Double(UInt32.max), timeout * 1000)))
        let eventLoop = channel.eventLoop
        let handler = self.handler
        let promise = eventLoop.makePromise(of: WireResponse.self)
        eventLoop.execute { [stamped] in
            handler.value.start(stamped, timeout: timeout, promise: promise)
        }
        // A caller that gives up (its task cancelled) sends CANCEL at once: the server stops the
        // work, and the stream stops counting against the connection's and the caller's limits.
        let response = try await withTaskCancellationHandler {
            try await promise.futureResult.get()
        } onCancel: {
            eventLoop.execute { handler.value.cancelCall(promise) }
        }
        guard response.status.code == .ok else { throw BrokerCallError.status(response.status) }
        return response
    }

    public func close() async {
        try? await channel.close()
    }
}

/// Writes the preface first thing, below the frame encoder (TLS holds it until the handshake is done).
final class PrefaceWriter: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    func channelActive(context: ChannelHandlerContext) {
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(bytes: ConnectionPreface.bytes())), promise: nil)
        context.fireChannelActive()
    }
}

/// The event-loop side of `BrokerConnection`.
final class ClientConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = Frame
    typealias OutboundIn = Frame
    typealias OutboundOut = Frame

    private var machine = ClientConnectionStateMachine()
    private var pending: [UInt32: (promise: EventLoopPromise<WireResponse>, timeout: Scheduled<Void>?)] = [:]
    private var context: ChannelHandlerContext?

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func start(_ request: WireRequest, timeout: Double, promise: EventLoopPromise<WireResponse>) {
        guard let context else { return promise.fail(BrokerCallError.connectionUnavailable) }
        do {
            let (streamID, action) = try machine.startRequest(request)
            let timer = context.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(Int64(max(0.001, min(timeout.isNaN ? 0 : timeout, 86_400)) * 1000))) { [weak self] () -> Void in
                self?.deadlinePassed(streamID: streamID)
            }
            pending[streamID] = (promise, timer)
            run(action, context: context)
        } catch .streamLimitReached {
            promise.fail(BrokerCallError.streamLimitReached)
        } catch .tooLarge(let bytes, let maximum) {
            promise.fail(BrokerCallError.status(ClientConnectionStateMachine.tooLargeStatus(bytes: bytes, maximum: maximum)))
        } catch {
            promise.fail(BrokerCallError.connectionUnavailable)
        }
    }

    /// The calling task was cancelled: CANCEL to the server, and the call fails with
    /// `CancellationError`. Rare, so the stream is found by its promise.
    func cancelCall(_ promise: EventLoopPromise<WireResponse>) {
        guard let context, let streamID = pending.first(where: { $0.value.promise.futureResult === promise.futureResult })?.key,
            let entry = pending.removeValue(forKey: streamID)
        else { return }
        entry.timeout?.cancel()
        run(machine.cancel(streamID: streamID), context: context)
        entry.promise.fail(CancellationError())
    }

    private func deadlinePassed(streamID: UInt32) {
        guard let context, let entry = pending.removeValue(forKey: streamID) else { return }
        run(machine.cancel(streamID: streamID), context: context)
        entry.promise.fail(BrokerCallError.deadlineExceeded)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        for action in machine.frameReceived(unwrapInboundIn(data)) { run(action, context: context) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        run(machine.connectionClosed(), context: context)
        for (_, entry) in pending {
            entry.timeout?.cancel()
            entry.promise.fail(BrokerCallError.connectionUnavailable)
        }
        pending.removeAll()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    private func run(_ action: ClientConnectionStateMachine.Action, context: ChannelHandlerContext) {
        switch action {
        case .send(let frame):
            context.writeAndFlush(wrapOutboundOut(frame), promise: nil)
        case .complete(let streamID, let response):
            guard let entry = pending.removeValue(forKey: streamID) else { return }
            entry.timeout?.cancel()
            entry.promise.succeed(response)
        case .fail(let streamIDs, let status):
            for id in streamIDs {
                guard let entry = pending.removeValue(forKey: id) else { continue }
                entry.timeout?.cancel()
                entry.promise.succeed(.failure(status))
            }
        case .sendPong(let payload):
            context.writeAndFlush(wrapOutboundOut(Frame(type: .ping, flags: .ack, streamID: 0, payload: payload)), promise: nil)
        case .close:
            context.close(promise: nil)
        case .none:
            break
        }
    }
}
