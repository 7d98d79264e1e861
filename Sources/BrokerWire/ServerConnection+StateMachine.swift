import NIOCore
import SwiftProtobuf

/// One client connection's protocol state, without I/O: preface, stream accounting, the
/// concurrent-stream limit, cancellation, keepalive, the connection's timers and graceful drain
/// (GOAWAY). The channel handler feeds it events and performs the action it returns; it decides
/// nothing itself. docs/protocol.md is the specification this follows.
public struct ServerConnectionStateMachine: Sendable {
    public struct Configuration: Sendable, Equatable {
        public var maximumConcurrentStreams: UInt32 = 256
        /// The largest frame payload either side sends (announced in SETTINGS).
        public var maximumFrameSize: UInt32 = 1 << 20
        /// Seconds from the transport being ready (TLS handshake done, or TCP accepted in
        /// plaintext) until the six preface bytes must have arrived.
        public var prefaceTimeout: Double = 10
        /// Seconds a frame may take to arrive once its first byte did (counted again after every
        /// complete frame), so a peer cannot hold a connection with half a header.
        public var partialFrameTimeout: Double = 30
        /// Seconds a connection may stay with no request in flight and no frame received before
        /// it is closed with a graceful GOAWAY.
        public var idleTimeout: Double = 300
        /// For a request with `timeout_ms` 0.
        public var defaultRequestTimeout: Double = 10
        /// The longest `timeout_ms` honoured: a larger one is cut to this, so no request holds
        /// a stream (and its caller's share of the server) for longer.
        public var maximumRequestTimeout: Double = 60
        /// `retry_after_ms` of an OVERLOADED refusal (the stream or caller limit was reached).
        public var overloadedRetryAfterMilliseconds: UInt32 = 100
        public init() {}

        /// The time a request is given: its `timeout_ms`, or the default when 0, at most the maximum.
        public func requestTimeout(milliseconds: UInt32) -> Double {
            let requested = milliseconds == 0 ? defaultRequestTimeout : Double(milliseconds) / 1000
            return min(requested, maximumRequestTimeout)
        }
    }

    public enum Action: Equatable, Sendable {
        /// Send SETTINGS (the first server frame).
        case sendSettings(WireSettings)
        /// Start serving this request.
        case dispatch(streamID: UInt32, request: WireRequest)
        /// Answer this stream at once with a failure, without dispatching it; then report
        /// `responseSent`.
        case refuse(streamID: UInt32, status: WireStatus)
        /// Stop work on this stream; send nothing on it.
        case cancel(streamID: UInt32)
        /// Stop work on this stream and answer it with this failure (its time ran out); then
        /// report `responseSent`.
        case expire(streamID: UInt32, status: WireStatus)
        /// Echo a PING with ACK.
        case sendPong(ByteBuffer)
        /// Send GOAWAY; close the connection once `thenClose` (now, or after the last stream).
        case sendGoAway(WireGoAway, thenClose: Bool)
        /// Close the connection now, sending nothing.
        case close
        case none
    }

    /// The connection's one timer; the driver arms the one `timer` names and re-arms it when
    /// the value changes (a new `generation` restarts the same kind).
    public enum TimerKind: Sendable, Equatable {
        case preface, partialFrame, idle
    }

    public struct Timer: Sendable, Equatable {
        public var kind: TimerKind
        public var seconds: Double
        public var generation: UInt64
    }

    private struct Streams: Sendable {
        /// Dispatched and not yet answered or cancelled: what counts against the stream limit.
        var open: Set<UInt32> = []
        /// The highest stream id received: a new stream must be above it.
        var highest: UInt32 = 0
        /// What a GOAWAY announces: every stream up to it was accepted (dispatched or answered);
        /// none above it was processed. Frozen by a graceful GOAWAY.
        var last: UInt32 = 0
    }

    private enum State: Sendable {
        /// TCP accepted; the TLS handshake (if any) is not done.
        case awaitingTransport
        /// Waiting for the preface; a refusal (the caller's connection cap) is sent instead of
        /// SETTINGS once it arrives.
        case awaitingPreface(refusal: WireStatus?)
        case active(Streams)
        /// Graceful GOAWAY sent: open streams finish; nothing above `last` is processed.
        case draining(Streams)
        case closed
    }

    public let configuration: Configuration
    private var state: State = .awaitingTransport
    private var serverVersion = ""
    private var partialFrame = false
    private var generation: UInt64 = 0

    public init(configuration: Configuration = Configuration()) {
        self.configuration = configuration
    }

    // MARK: Events

    /// The transport is ready (the TLS handshake verified the caller, or a plaintext connection
    /// was accepted): the preface timer starts. With `refusal`, the connection is answered
    /// GOAWAY(refusal) once its preface arrives, and closed.
    public mutating func connectionStarted(serverVersion: String, refusal: WireStatus? = nil) -> Action {
        guard case .awaitingTransport = state else { return .none }
        self.serverVersion = serverVersion
        state = .awaitingPreface(refusal: refusal)
        generation &+= 1
        return .none
    }

    /// The six preface bytes arrived and are right: SETTINGS (or the pending refusal) goes out.
    public mutating func prefaceReceived() -> Action {
        guard case .awaitingPreface(let refusal) = state else { return .none }
        generation &+= 1
        if let refusal {
            state = .closed
            return .sendGoAway(.with { $0.lastStreamID = 0; $0.status = refusal }, thenClose: true)
        }
        state = .active(Streams())
        return .sendSettings(
            .with {
                $0.protocolVersion = UInt32(ConnectionPreface.currentVersion)
                $0.maxConcurrentStreams = configuration.maximumConcurrentStreams
                $0.maxFrameSize = configuration.maximumFrameSize
                $0.serverVersion = serverVersion
            })
    }

    public mutating func frameReceived(_ frame: Frame) -> Action {
        // Any complete frame restarts the partial-frame and idle timers.
        generation &+= 1
        switch state {
        case .awaitingTransport, .awaitingPreface, .closed:
            return .none
        case .active(var streams):
            switch frame.type {
            case .request:
                guard frame.streamID > streams.highest else {
                    return protocolViolation("stream \(frame.streamID) is not above the last stream \(streams.highest)", lastStreamID: streams.last)
                }
                streams.highest = frame.streamID
                streams.last = frame.streamID
                guard streams.open.count < configuration.maximumConcurrentStreams else {
                    state = .active(streams)
                    return .refuse(
                        streamID: frame.streamID,
                        status: .failure(
                            .resourceExhausted, .overloaded,
                            "more than \(configuration.maximumConcurrentStreams) requests in flight on one connection; wait for answers or open another connection",
                            retryable: true, retryAfterMilliseconds: configuration.overloadedRetryAfterMilliseconds))
                }
                guard let request = try? frame.message(as: WireRequest.self), request.method != nil else {
                    state = .active(streams)
                    return .refuse(
                        streamID: frame.streamID,
                        status: .failure(.invalidArgument, .protocolError, "the REQUEST payload is not a fedbroker.v1.Request with a method"))
                }
                state = .closed  // lets go of the state's copy, so the insert does not copy the set
                streams.open.insert(frame.streamID)
                state = .active(streams)
                return .dispatch(streamID: frame.streamID, request: request)
            case .cancel:
                guard frame.streamID <= streams.highest else {
                    return protocolViolation("CANCEL of stream \(frame.streamID), which was never opened", lastStreamID: streams.last)
                }
                guard streams.open.remove(frame.streamID) != nil else { return .none }  // already answered: harmless
                state = .active(streams)
                return .cancel(streamID: frame.streamID)
            case .ping:
                return frame.flags.contains(.ack) ? .none : .sendPong(frame.payload)
            case .response, .goAway, .settings:
                return protocolViolation("a client may not send \(frame.type) frames", lastStreamID: streams.last)
            }
        case .draining(var streams):
            switch frame.type {
            case .request:
                guard frame.streamID > streams.highest else {
                    return protocolViolation("stream \(frame.streamID) is not above the last stream \(streams.highest)", lastStreamID: streams.last)
                }
                streams.highest = frame.streamID
                state = .draining(streams)
                // Above the announced last stream: never processed, retryable on another connection.
                return .refuse(
                    streamID: frame.streamID,
                    status: .failure(.unavailable, .shuttingDown, "this connection is draining; retry on a new connection", retryable: true))
            case .cancel:
                guard frame.streamID <= streams.highest else {
                    return protocolViolation("CANCEL of stream \(frame.streamID), which was never opened", lastStreamID: streams.last)
                }
                guard streams.open.remove(frame.streamID) != nil else { return .none }
                if streams.open.isEmpty {
                    state = .closed
                    return .close
                }
                state = .draining(streams)
                return .cancel(streamID: frame.streamID)
            case .ping:
                return frame.flags.contains(.ack) ? .none : .sendPong(frame.payload)
            case .response, .goAway, .settings:
                return protocolViolation("a client may not send \(frame.type) frames", lastStreamID: streams.last)
            }
        }
    }

    /// Whether bytes of an incomplete frame are buffered after the last read: the partial-frame
    /// timer runs from the moment they appear (or from the last complete frame) until none are.
    public mutating func bytesBuffered(partialFrame: Bool) {
        if partialFrame, !self.partialFrame { generation &+= 1 }
        self.partialFrame = partialFrame
    }

    /// The answer to `streamID` was written (or the stream was refused or expired).
    public mutating func responseSent(streamID: UInt32) -> Action {
        switch state {
        case .active(var streams):
            state = .closed  // lets go of the state's copy, so the removal does not copy the set
            let removed = streams.open.remove(streamID) != nil
            if removed, streams.open.isEmpty { generation &+= 1 }  // idle from now
            state = .active(streams)
            return .none
        case .draining(var streams):
            streams.open.remove(streamID)
            if streams.open.isEmpty {
                state = .closed
                return .close
            }
            state = .draining(streams)
            return .none
        case .awaitingTransport, .awaitingPreface, .closed:
            return .none
        }
    }

    /// The request's time (its clamped `timeout_ms`) ran out before its answer.
    public mutating func deadlinePassed(streamID: UInt32) -> Action {
        switch state {
        case .active(let streams), .draining(let streams):
            guard streams.open.contains(streamID) else { return .none }
            return .expire(
                streamID: streamID,
                status: .failure(.deadlineExceeded, .unspecified, "the request's time ran out before its answer; the server stopped its work", retryable: true))
        case .awaitingTransport, .awaitingPreface, .closed:
            return .none
        }
    }

    /// The timer the driver armed fired. A timer that is no longer `timer` (re-armed or
    /// superseded meanwhile) does nothing.
    public mutating func timerFired(_ fired: Timer) -> Action {
        guard fired == timer else { return .none }
        switch fired.kind {
        case .preface:
            // No preface: the peer has not shown it speaks this protocol; nothing to tell it.
            state = .closed
            return .close
        case .partialFrame:
            let last: UInt32
            switch state {
            case .active(let streams), .draining(let streams): last = streams.last
            default: last = 0
            }
            state = .closed
            return .sendGoAway(
                .with {
                    $0.lastStreamID = last
                    $0.status = .failure(
                        .deadlineExceeded, .protocolError, "a frame was not completed within \(Self.seconds(configuration.partialFrameTimeout)) s")
                }, thenClose: true)
        case .idle:
            guard case .active(let streams) = state else { return .none }
            state = .closed
            return .sendGoAway(
                .with {
                    $0.lastStreamID = streams.last
                    $0.status = .failure(
                        .unavailable, .shuttingDown,
                        "the connection was idle for \(Self.seconds(configuration.idleTimeout)) s; open a new one when needed", retryable: true)
                }, thenClose: true)
        }
    }

    /// Graceful shutdown: announce the last stream served, finish those, then close.
    public mutating func drain(reason: String = "the server is shutting down") -> Action {
        switch state {
        case .awaitingTransport, .awaitingPreface:
            state = .closed
            return .close
        case .active(let streams):
            state = streams.open.isEmpty ? .closed : .draining(streams)
            return .sendGoAway(
                .with {
                    $0.lastStreamID = streams.last
                    $0.status = .failure(.unavailable, .shuttingDown, reason, retryable: true)
                }, thenClose: streams.open.isEmpty)
        case .draining, .closed:
            return .none
        }
    }

    /// The decoder refused the byte stream (bad preface, oversized or unknown frame, …).
    public mutating func decodingFailed(_ error: WireError) -> Action {
        switch state {
        case .awaitingTransport, .awaitingPreface:
            state = .closed
            // The right magic with another version speaks this protocol: tell it which version.
            // Anything else is not our protocol, and gets nothing in our framing.
            if case .unsupportedVersion = error {
                return .sendGoAway(.with { $0.status = .failure(.unimplemented, .protocolError, error.description) }, thenClose: true)
            }
            return .close
        case .active(let streams), .draining(let streams):
            return protocolViolation(error.description, lastStreamID: streams.last)
        case .closed:
            return .none
        }
    }

    // MARK: Queries

    /// The RESPONSE frame for `response`, never larger than `maximumFrameSize` (the bound SETTINGS
    /// announced applies to the server's frames too): an answer that would be is replaced by an
    /// INTERNAL failure.
    public func responseFrame(streamID: UInt32, response: WireResponse) -> Frame {
        if let frame = try? Frame(type: .response, streamID: streamID, message: response),
            frame.payload.readableBytes <= Int(configuration.maximumFrameSize)
        {
            return frame
        }
        let failure = WireResponse.failure(
            .failure(.internal, .unspecified, "the answer does not fit in \(configuration.maximumFrameSize) bytes (max_frame_size)"))
        if let frame = try? Frame(type: .response, streamID: streamID, message: failure),
            frame.payload.readableBytes <= Int(configuration.maximumFrameSize)
        {
            return frame
        }
        // A bound too small even for that message: the code alone.
        let bare = WireResponse.failure(.with { $0.code = .internal })
        return (try? Frame(type: .response, streamID: streamID, message: bare)) ?? Frame(type: .response, streamID: streamID)
    }

    /// The timer to have armed now; nil: none.
    public var timer: Timer? {
        switch state {
        case .awaitingTransport, .closed:
            return nil
        case .awaitingPreface:
            return Timer(kind: .preface, seconds: configuration.prefaceTimeout, generation: generation)
        case .active(let streams):
            if partialFrame { return Timer(kind: .partialFrame, seconds: configuration.partialFrameTimeout, generation: generation) }
            return streams.open.isEmpty ? Timer(kind: .idle, seconds: configuration.idleTimeout, generation: generation) : nil
        case .draining:
            return partialFrame ? Timer(kind: .partialFrame, seconds: configuration.partialFrameTimeout, generation: generation) : nil
        }
    }

    /// Requests being served.
    public var openStreams: Int {
        switch state {
        case .active(let streams), .draining(let streams): streams.open.count
        case .awaitingTransport, .awaitingPreface, .closed: 0
        }
    }

    public var isClosed: Bool {
        if case .closed = state { return true }
        return false
    }

    // MARK: Helpers

    private mutating func protocolViolation(_ message: String, lastStreamID: UInt32) -> Action {
        state = .closed
        return .sendGoAway(
            .with {
                $0.lastStreamID = lastStreamID
                $0.status = .failure(.invalidArgument, .protocolError, message)
            }, thenClose: true)
    }

    private static func seconds(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e9 ? String(Int(value)) : String(value)
    }
}
