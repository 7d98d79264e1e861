import BrokerWire
import FedBrokerCore
import Foundation
import Logging
import NIOCore
import NIOSSL
import NIOTLS
import SwiftProtobuf

/// What the transport hands each request to: the broker's service logic.
public protocol BrokerRequestHandler: Sendable {
    func handle(_ request: WireRequest, caller: CallerIdentity, deadline: Date) async -> WireResponse
}

/// One connection: decodes its bytes (`ServerFrameDecoder`), drives `ServerConnectionStateMachine`
/// with them and with its timers, and runs each request as its own task, so slow calls never
/// block the connection and answers go out as they finish. It owns the TLS handshake's timer and
/// the caller's admission (`CallerAdmission`); everything else it does is what the machine says.
final class ServerConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var machine: ServerConnectionStateMachine
    private let processor: NIOSingleStepByteToMessageProcessor<ServerFrameDecoder>
    private let configuration: BrokerTransportServer.Configuration
    private let secure: Bool
    private let service: any BrokerRequestHandler
    private let admission: CallerAdmission
    private let events: TransportEvents
    private let logger: Logger

    private var context: ChannelHandlerContext?
    /// Set by the TLS verification callback, during the handshake.
    private var verifiedCaller: CallerIdentity?
    /// Set once the transport is ready: the caller every request is served as.
    private var caller: CallerIdentity?
    private var holdsCallerConnection = false
    private var handshakeTimer: Scheduled<Void>?
    private var armed: ServerConnectionStateMachine.Timer?
    private var armedTask: Scheduled<Void>?
    private var tasks: [UInt32: Task<Void, Never>] = [:]
    /// When each open request's time runs out (its deadline plus `deadlineGrace`). One timer per
    /// connection, armed for the earliest, expires them: a timer scheduled and cancelled for every
    /// request cost about 2 % of the cached Unwrap's CPU (`perf`), for deadlines that almost
    /// never fire.
    private var deadlines: [UInt32: NIODeadline] = [:]
    private var deadlineTimer: (at: NIODeadline, task: Scheduled<Void>)?
    private var closing = false
    /// A flush is queued on the event loop: frames written until it runs leave in one TLS write.
    private var flushQueued = false

    /// Lets the service's own answer at the deadline (a vault timeout, with its reason) win
    /// over the transport's generic one.
    static let deadlineGrace = 0.1

    init(
        configuration: BrokerTransportServer.Configuration, secure: Bool, service: any BrokerRequestHandler, admission: CallerAdmission,
        events: TransportEvents, logger: Logger
    ) {
        self.machine = ServerConnectionStateMachine(configuration: configuration.connection)
        self.processor = NIOSingleStepByteToMessageProcessor(ServerFrameDecoder(maximumPayloadLength: Int(configuration.connection.maximumFrameSize)))
        self.configuration = configuration
        self.secure = secure
        self.service = service
        self.admission = admission
        self.events = events
        self.logger = logger
    }

    /// The TLS verification callback found this identity in the client certificate.
    func callerVerified(_ identity: CallerIdentity) { verifiedCaller = identity }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func channelActive(context: ChannelHandlerContext) {
        if secure {
            let seconds = configuration.handshakeTimeout
            handshakeTimer = context.eventLoop.assumeIsolated().scheduleTask(in: Self.amount(seconds)) { [self] in
                guard caller == nil, !closing else { return }
                events.closed(.handshakeTimeout, peer: context.remoteAddress, detail: "no TLS handshake within \(seconds) s (server.handshakeTimeoutSeconds)")
                close(context: context)
            }
        } else {
            start(caller: .unauthenticated, context: context)
        }
        context.fireChannelActive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .handshakeCompleted = event as? TLSUserEvent {
            handshakeTimer?.cancel()
            handshakeTimer = nil
            // The verification callback runs on every handshake that gets here; no identity
            // means it did not, and nothing is served without one.
            guard let identity = verifiedCaller else {
                events.closed(.noIdentity, peer: context.remoteAddress, detail: "the handshake completed without a verified caller identity")
                close(context: context)
                return
            }
            start(caller: identity, context: context)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        closing = true
        cancelTimers()
        for task in tasks.values { task.cancel() }
        tasks.removeAll()
        if holdsCallerConnection, let caller { admission.closeConnection(caller) }
        holdsCallerConnection = false
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing else { return }
        do {
            try processor.process(buffer: unwrapInboundIn(data)) { event in
                switch event {
                case .preface:
                    run(machine.prefaceReceived(), context: context)
                case .frame(let frame):
                    let action = machine.frameReceived(frame)
                    if case .sendGoAway(let goAway, thenClose: true) = action {
                        events.closed(.protocolError, peer: context.remoteAddress, caller: caller, detail: goAway.status.message)
                    }
                    run(action, context: context)
                }
            }
        } catch let error as WireError {
            let beforePreface = error == .badPreface || { if case .unsupportedVersion = error { true } else { false } }()
            events.closed(beforePreface ? .badPreface : .protocolError, peer: context.remoteAddress, caller: caller, detail: error.description)
            run(machine.decodingFailed(error), context: context)
        } catch {
            logger.debug("undecodable input", metadata: ["fb.error": "\(error)"])
            close(context: context)
        }
        if !closing { machine.bytesBuffered(partialFrame: processor.unprocessedBytes > 0) }
        syncTimer(context: context)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let refusal = error as? CallerCertificateRefusal {
            events.closed(.init(refusal.code), peer: context.remoteAddress, detail: refusal.message)
        } else if secure, caller == nil, !closing {
            // Before the handshake is done every error is the handshake's: an unknown CA, no
            // certificate, an expired one, a peer that hung up.
            events.closed(.handshakeFailed, peer: context.remoteAddress, detail: "\(error)")
        } else {
            logger.debug("connection error", metadata: ["fb.error": "\(BoundedText.escaped("\(error)"))"])
        }
        close(context: context)
    }

    /// A client that stops reading: once its answers back up, stop reading its requests, so it
    /// cannot make the server buffer without bound; resume when it drains.
    func channelWritabilityChanged(context: ChannelHandlerContext) {
        context.channel.setOption(ChannelOptions.autoRead, value: context.channel.isWritable).whenFailure { _ in }
        context.fireChannelWritabilityChanged()
    }

    /// Graceful drain (server shutdown): GOAWAY, finish open streams, close. Runs on the event loop.
    func drain() {
        guard let context else { return }
        run(machine.drain(), context: context)
        syncTimer(context: context)
    }

    // MARK: Driving the machine

    /// The transport is ready: the caller is admitted (or will be told it is over its cap once
    /// its preface arrives) and the preface timer starts.
    private func start(caller: CallerIdentity, context: ChannelHandlerContext) {
        self.caller = caller
        var refusal: WireStatus?
        if admission.openConnection(caller) {
            holdsCallerConnection = true
        } else {
            let limit = admission.limits.maximumConnections
            events.closed(.callerConnectionLimit, peer: context.remoteAddress, caller: caller, detail: "the caller holds \(limit) connections (server.maxConnectionsPerCaller)")
            refusal = .failure(
                .resourceExhausted, .overloaded, "this caller already holds \(limit) connections, the server's limit per caller; reuse them or retry later",
                retryable: true, retryAfterMilliseconds: configuration.callerConnectionRetryAfterMilliseconds)
        }
        run(machine.connectionStarted(serverVersion: configuration.serverVersion, refusal: refusal), context: context)
        syncTimer(context: context)
    }

    private func run(_ action: ServerConnectionStateMachine.Action, context: ChannelHandlerContext) {
        switch action {
        case .sendSettings(let settings):
            write(try? Frame(type: .settings, streamID: 0, message: settings), context: context)
        case .dispatch(let streamID, let request):
            dispatch(streamID: streamID, request: request, context: context)
        case .refuse(let streamID, let status):
            if status.reason == .overloaded {
                events.refused(.streamLimit, peer: context.remoteAddress, caller: caller, detail: "the connection has \(machine.openStreams) requests in flight")
            }
            write(machine.responseFrame(streamID: streamID, response: .failure(status)), context: context)
            run(machine.responseSent(streamID: streamID), context: context)
        case .cancel(let streamID):
            tasks.removeValue(forKey: streamID)?.cancel()
            deadlines.removeValue(forKey: streamID)
        case .expire(let streamID, let status):
            tasks.removeValue(forKey: streamID)?.cancel()
            deadlines.removeValue(forKey: streamID)
            events.refused(.deadline, peer: context.remoteAddress, caller: caller, detail: "a request's time ran out before the service answered")
            write(machine.responseFrame(streamID: streamID, response: .failure(status)), context: context)
            run(machine.responseSent(streamID: streamID), context: context)
        case .sendPong(let payload):
            write(Frame(type: .ping, flags: .ack, streamID: 0, payload: payload), context: context)
        case .sendGoAway(let goAway, let thenClose):
            write(try? Frame(type: .goAway, streamID: 0, message: goAway), context: context)
            if thenClose { close(context: context) }
        case .close:
            close(context: context)
        case .none:
            break
        }
    }

    private func dispatch(streamID: UInt32, request: WireRequest, context: ChannelHandlerContext) {
        let caller = self.caller ?? .unauthenticated
        guard admission.startRequest(caller) else {
            let limit = admission.limits.maximumRequests
            events.refused(.callerRequestLimit, peer: context.remoteAddress, caller: caller, detail: "the caller has \(limit) requests in flight (server.maxRequestsPerCaller)")
            let status = WireStatus.failure(
                .resourceExhausted, .overloaded, "this caller already has \(limit) requests in flight, the server's limit per caller; retry shortly",
                retryable: true, retryAfterMilliseconds: machine.configuration.overloadedRetryAfterMilliseconds)
            write(machine.responseFrame(streamID: streamID, response: .failure(status)), context: context)
            run(machine.responseSent(streamID: streamID), context: context)
            return
        }
        let timeout = machine.configuration.requestTimeout(milliseconds: request.timeoutMs)
        let deadline = Date().addingTimeInterval(timeout)
        let service = self.service
        let admission = self.admission
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        tasks[streamID] = Task {
            let response = await service.handle(request, caller: caller, deadline: deadline)
            admission.finishRequest(caller)
            eventLoop.execute {
                let (handler, context) = loopBound.value
                handler.finish(streamID: streamID, response: response, context: context)
            }
        }
        let expiry = NIODeadline.now() + Self.amount(timeout + Self.deadlineGrace)
        deadlines[streamID] = expiry
        armDeadlineTimer(for: expiry, context: context)
    }

    /// Makes sure the deadline timer fires by `expiry`: it is moved only for a deadline earlier
    /// than the one it is armed for (a request with a shorter timeout than those before it).
    private func armDeadlineTimer(for expiry: NIODeadline, context: ChannelHandlerContext) {
        if let armed = deadlineTimer, armed.at <= expiry { return }
        deadlineTimer?.task.cancel()
        let task = context.eventLoop.assumeIsolated().scheduleTask(deadline: expiry) { [self] in
            // Only the armed timer acts; a replaced one that ran anyway leaves it to its successor.
            guard deadlineTimer?.at == expiry else { return }
            deadlineTimer = nil
            expireDueRequests(context: context)
        }
        deadlineTimer = (expiry, task)
    }

    /// Answers every request whose time has run out, oldest deadline first, and re-arms the timer
    /// for the earliest left. Requests that finished meanwhile are no longer in `deadlines`.
    private func expireDueRequests(context: ChannelHandlerContext) {
        let now = NIODeadline.now()
        let due = deadlines.filter { $0.value <= now }.sorted { $0.value < $1.value }
        for (streamID, _) in due where !closing {
            deadlines.removeValue(forKey: streamID)
            run(machine.deadlinePassed(streamID: streamID), context: context)
        }
        if !closing, let earliest = deadlines.values.min() { armDeadlineTimer(for: earliest, context: context) }
        syncTimer(context: context)
    }

    private func finish(streamID: UInt32, response: WireResponse, context: ChannelHandlerContext) {
        // A cancelled or expired stream was already forgotten: nothing more is written on it.
        guard tasks.removeValue(forKey: streamID) != nil, !closing else { return }
        deadlines.removeValue(forKey: streamID)
        write(machine.responseFrame(streamID: streamID, response: response), context: context)
        run(machine.responseSent(streamID: streamID), context: context)
        syncTimer(context: context)
    }

    /// Arms the timer the machine names, if it is not the one armed.
    private func syncTimer(context: ChannelHandlerContext) {
        let wanted = closing ? nil : machine.timer
        guard wanted != armed else { return }
        armedTask?.cancel()
        armedTask = nil
        armed = wanted
        guard let wanted else { return }
        armedTask = context.eventLoop.assumeIsolated().scheduleTask(in: Self.amount(wanted.seconds)) { [self] in
            let action = machine.timerFired(wanted)
            if action != .none {
                switch wanted.kind {
                case .preface:
                    events.closed(.prefaceTimeout, peer: context.remoteAddress, caller: caller, detail: "no preface within \(wanted.seconds) s (server.prefaceTimeoutSeconds)")
                case .partialFrame:
                    events.closed(
                        .partialFrameTimeout, peer: context.remoteAddress, caller: caller,
                        detail: "a frame was not completed within \(wanted.seconds) s (server.partialFrameTimeoutSeconds)")
                case .idle:
                    events.closed(.idleTimeout, peer: context.remoteAddress, caller: caller, detail: "idle for \(wanted.seconds) s (server.idleTimeoutSeconds)")
                }
            }
            run(action, context: context)
            syncTimer(context: context)
        }
    }

    private func write(_ frame: Frame?, context: ChannelHandlerContext) {
        guard let frame, !closing else { return }
        var buffer = context.channel.allocator.buffer(capacity: Frame.headerLength + frame.payload.readableBytes)
        try? FrameEncoder().encode(data: frame, out: &buffer)
        // Not flushed at once: answers that complete together (a journal sync resumes a whole
        // batch of them) go out in one TLS record and one system call. The flush runs after the
        // event loop's tasks already queued, which is where those answers are.
        context.write(wrapOutboundOut(buffer), promise: nil)
        guard !flushQueued else { return }
        flushQueued = true
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        context.eventLoop.execute {
            let (handler, context) = loopBound.value
            handler.flushQueued = false
            guard !handler.closing else { return }
            context.flush()
        }
    }

    private func close(context: ChannelHandlerContext) {
        guard !closing else { return }
        closing = true
        cancelTimers()
        // What was written and not yet flushed (a GOAWAY saying why) leaves before the close.
        if flushQueued { context.flush() }
        context.close(promise: nil)
    }

    private func cancelTimers() {
        handshakeTimer?.cancel()
        handshakeTimer = nil
        armedTask?.cancel()
        armedTask = nil
        armed = nil
        deadlineTimer?.task.cancel()
        deadlineTimer = nil
        deadlines.removeAll()
    }

    private static func amount(_ seconds: Double) -> TimeAmount {
        .milliseconds(Int64(max(0, min(seconds, 31_536_000)) * 1000))
    }
}
