import NIOCore
import SwiftProtobuf

/// One client connection's protocol state, without I/O: preface, stream accounting, the
/// concurrent-stream limit, cancellation, keepalive and graceful drain (GOAWAY). The channel
/// handler feeds it events and performs the action it returns; it decides nothing itself.
public struct ServerConnectionStateMachine: Sendable {
    public struct Configuration: Sendable, Equatable {
        public var maximumConcurrentStreams: UInt32 = 256
        public var maximumFrameSize: UInt32 = 1 << 20
        public init() {}
    }

    public enum Action: Equatable, Sendable {
        /// Send SETTINGS (the first server frame).
        case sendSettings(WireSettings)
        /// Start serving this request.
        case dispatch(streamID: UInt32, request: WireRequest)
        /// Answer this stream at once with a failure, without dispatching it.
        case refuse(streamID: UInt32, status: WireStatus)
        /// Stop work on this stream; send nothing on it.
        case cancel(streamID: UInt32)
        /// Echo a PING with ACK.
        case sendPong(ByteBuffer)
        /// Send GOAWAY; close the connection once `thenClose` (now, or after the last stream).
        case sendGoAway(WireGoAway, thenClose: Bool)
        /// Close the connection now.
        case close
        case none
    }

    private enum State: Sendable {
        case awaitingPreface
        case active(open: Set<UInt32>, lastStreamID: UInt32)
        /// GOAWAY sent: open streams finish; nothing above `lastStreamID` is accepted.
        case draining(open: Set<UInt32>, lastStreamID: UInt32)
        case closed
    }

    public let configuration: Configuration
    private var state: State = .awaitingPreface

    public init(configuration: Configuration = Configuration()) {
        self.configuration = configuration
    }

    /// The connection is up: SETTINGS go out at once (the decoder checks the client's preface
    /// independently and closes the connection if it is wrong).
    public mutating func connectionStarted(serverVersion: String) -> Action {
        guard case .awaitingPreface = state else { return .none }
        state = .active(open: [], lastStreamID: 0)
        return .sendSettings(.with {
            $0.protocolVersion = UInt32(ConnectionPreface.currentVersion)
            $0.maxConcurrentStreams = configuration.maximumConcurrentStreams
            $0.maxFrameSize = configuration.maximumFrameSize
            $0.serverVersion = serverVersion
        })
    }

    public mutating func frameReceived(_ frame: Frame) -> Action {
        switch state {
        case .awaitingPreface, .closed:
            return .none
        case .active(var open, let last):
            switch frame.type {
            case .request:
                guard frame.streamID > last else {
                    return protocolViolation("stream \(frame.streamID) is not above the last stream \(last)", lastStreamID: last)
                }
                guard open.count < configuration.maximumConcurrentStreams else {
                    state = .active(open: open, lastStreamID: frame.streamID)
                    return .refuse(
                        streamID: frame.streamID,
                        status: .failure(
                            .resourceExhausted, .overloaded,
                            "more than \(configuration.maximumConcurrentStreams) requests in flight on one connection; wait for answers or open another connection",
                            retryable: true))
                }
                guard let request = try? frame.message(as: WireRequest.self), request.method != nil else {
                    state = .active(open: open, lastStreamID: frame.streamID)
                    return .refuse(
                        streamID: frame.streamID,
                        status: .failure(.invalidArgument, .protocolError, "the REQUEST payload is not a fedbroker.v1.Request with a method"))
                }
                open.insert(frame.streamID)
                state = .active(open: open, lastStreamID: frame.streamID)
                return .dispatch(streamID: frame.streamID, request: request)
            case .cancel:
                guard open.remove(frame.streamID) != nil else { return .none }  // already answered: harmless
                state = .active(open: open, lastStreamID: last)
                return .cancel(streamID: frame.streamID)
            case .ping:
                return frame.flags.contains(.ack) ? .none : .sendPong(frame.payload)
            case .response, .goAway, .settings:
                return protocolViolation("a client may not send \(frame.type) frames", lastStreamID: last)
            }
        case .draining(var open, let last):
            switch frame.type {
            case .request:
                // Above the announced last stream: refused, retryable on another connection.
                return .refuse(
                    streamID: frame.streamID,
                    status: .failure(.unavailable, .shuttingDown, "this connection is draining; retry on a new connection", retryable: true))
            case .cancel:
                guard open.remove(frame.streamID) != nil else { return .none }
                state = .draining(open: open, lastStreamID: last)
                return open.isEmpty ? .close : .cancel(streamID: frame.streamID)
            case .ping:
                return frame.flags.contains(.ack) ? .none : .sendPong(frame.payload)
            case .response, .goAway, .settings:
                return protocolViolation("a client may not send \(frame.type) frames", lastStreamID: last)
            }
        }
    }

    /// The answer to `streamID` was written (or the stream was refused).
    public mutating func responseSent(streamID: UInt32) -> Action {
        switch state {
        case .active(var open, let last):
            open.remove(streamID)
            state = .active(open: open, lastStreamID: last)
            return .none
        case .draining(var open, let last):
            open.remove(streamID)
            state = .draining(open: open, lastStreamID: last)
            if open.isEmpty {
                state = .closed
                return .close
            }
            return .none
        case .awaitingPreface, .closed:
            return .none
        }
    }

    /// Graceful shutdown: announce the last stream served, finish those, then close.
    public mutating func drain(reason: String = "the server is shutting down") -> Action {
        switch state {
        case .awaitingPreface:
            state = .closed
            return .close
        case .active(let open, let last):
            state = open.isEmpty ? .closed : .draining(open: open, lastStreamID: last)
            return .sendGoAway(
                .with {
                    $0.lastStreamID = last
                    $0.status = .failure(.unavailable, .shuttingDown, reason, retryable: true)
                }, thenClose: open.isEmpty)
        case .draining, .closed:
            return .none
        }
    }

    /// The decoder refused the byte stream (bad preface, oversized or unknown frame).
    public mutating func decodingFailed(_ error: WireError) -> Action {
        switch state {
        case .awaitingPreface:
            // Not our protocol (or version): there is nobody to tell in our framing.
            state = .closed
            if case .unsupportedVersion = error {
                return .sendGoAway(.with { $0.status = .failure(.unimplemented, .protocolError, error.description) }, thenClose: true)
            }
            return .close
        case .active(_, let last), .draining(_, let last):
            return protocolViolation(error.description, lastStreamID: last)
        case .closed:
            return .none
        }
    }

    private mutating func protocolViolation(_ message: String, lastStreamID: UInt32) -> Action {
        state = .closed
        return .sendGoAway(
            .with {
                $0.lastStreamID = lastStreamID
                $0.status = .failure(.invalidArgument, .protocolError, message)
            }, thenClose: true)
    }

    /// Requests being served.
    public var openStreams: Int {
        switch state {
        case .active(let open, _), .draining(let open, _): open.count
        case .awaitingPreface, .closed: 0
        }
    }
}
