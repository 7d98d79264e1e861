import BrokerWire
import NIOCore
import SwiftProtobuf

/// One client connection's protocol state, without I/O: the preface and the server's SETTINGS,
/// stream ids, the server's concurrent-stream limit, matching responses to requests, and what a
/// GOAWAY means for requests in flight. The connection driver feeds it events and performs the
/// actions; the pool uses `canOpenStream` to pick a connection.
public struct ClientConnectionStateMachine: Sendable {
    public enum Action: Equatable, Sendable {
        /// Write this REQUEST frame.
        case send(Frame)
        /// Complete the call on `streamID` with this response.
        case complete(streamID: UInt32, response: WireResponse)
        /// Fail these calls; `retryable` when the server never saw them (GOAWAY, close).
        case fail(streamIDs: [UInt32], status: WireStatus)
        /// Answer a PING.
        case sendPong(ByteBuffer)
        /// Close the connection.
        case close
        case none
    }

    public enum Refusal: Error, Equatable, Sendable {
        /// The server's stream limit is reached: wait, or use another connection.
        case streamLimitReached
        /// SETTINGS has not arrived yet, or the connection is draining or closed.
        case notReady
        /// The request's frame is over the server's `max_frame_size`: the server would answer it by
        /// closing the connection (and everyone's calls on it), so it is never sent.
        case tooLarge(bytes: Int, maximum: UInt32)
    }

    /// How a request too large for the server fails: not retryable, since it stays too large.
    public static func tooLargeStatus(bytes: Int, maximum: UInt32) -> WireStatus {
        .failure(
            .invalidArgument, .protocolError,
            "the request is \(bytes) bytes; the broker takes frames of at most \(maximum) bytes (its max_frame_size)")
    }

    private enum State: Sendable {
        case awaitingSettings(queued: [(UInt32, WireRequest)])
        case ready(maxStreams: UInt32, open: Set<UInt32>)
        /// GOAWAY received: streams up to `lastStreamID` may still be answered.
        case draining(open: Set<UInt32>)
        case closed
    }

    private var state: State = .awaitingSettings(queued: [])
    private var nextStreamID: UInt32 = 1
    public private(set) var maximumFrameSize: UInt32 = 1 << 20

    public init() {}

    /// Opens a stream for `request`: returns the id and the action (send now, or queued until SETTINGS).
    /// Once the ids are used up (docs/protocol.md: they never wrap), the connection takes no more.
    public mutating func startRequest(_ request: WireRequest) throws(Refusal) -> (streamID: UInt32, action: Action) {
        guard nextStreamID <= Frame.maximumStreamID else { throw .notReady }
        switch state {
        case .awaitingSettings(var queued):
            let id = allocate()
            queued.append((id, request))
            state = .awaitingSettings(queued: queued)
            return (id, .none)
        case .ready(let maxStreams, var open):
            guard open.count < maxStreams else { throw .streamLimitReached }
            let id = allocate()
            let frame = try! Frame(type: .request, streamID: id, message: request)
            guard frame.payload.readableBytes <= Int(maximumFrameSize) else {
                throw .tooLarge(bytes: frame.payload.readableBytes, maximum: maximumFrameSize)
            }
            state = .closed  // lets go of the state's copy, so the insert does not copy the set
            open.insert(id)
            state = .ready(maxStreams: maxStreams, open: open)
            return (id, .send(frame))
        case .draining, .closed:
            throw .notReady
        }
    }

    /// The caller gave up (deadline, cancellation): tell the server, forget the stream.
    public mutating func cancel(streamID: UInt32) -> Action {
        switch state {
        case .ready(let maxStreams, var open):
            guard open.remove(streamID) != nil else { return .none }
            state = .ready(maxStreams: maxStreams, open: open)
            return .send(Frame(type: .cancel, streamID: streamID))
        case .draining(var open):
            guard open.remove(streamID) != nil else { return .none }
            state = open.isEmpty ? .closed : .draining(open: open)
            return open.isEmpty ? .close : .send(Frame(type: .cancel, streamID: streamID))
        case .awaitingSettings(var queued):
            queued.removeAll { $0.0 == streamID }
            state = .awaitingSettings(queued: queued)
            return .none
        case .closed:
            return .none
        }
    }

    /// A frame from the server. Returns the actions in order.
    public mutating func frameReceived(_ frame: Frame) -> [Action] {
        switch (frame.type, state) {
        case (.settings, .awaitingSettings(let queued)):
            guard let settings = try? frame.message(as: WireSettings.self), settings.maxConcurrentStreams > 0 else {
                return protocolError("the server's SETTINGS are not valid")
            }
            maximumFrameSize = settings.maxFrameSize
            var open = Set<UInt32>()
            var actions: [Action] = []
            var refused: [UInt32] = []
            for (id, request) in queued {
                let frame = try! Frame(type: .request, streamID: id, message: request)
                if frame.payload.readableBytes > Int(settings.maxFrameSize) {
                    let status = Self.tooLargeStatus(bytes: frame.payload.readableBytes, maximum: settings.maxFrameSize)
                    actions.append(.fail(streamIDs: [id], status: status))
                } else if open.count < settings.maxConcurrentStreams {
                    open.insert(id)
                    actions.append(.send(frame))
                } else {
                    refused.append(id)
                }
            }
            state = .ready(maxStreams: settings.maxConcurrentStreams, open: open)
            if !refused.isEmpty {
                actions.append(.fail(streamIDs: refused, status: .failure(.resourceExhausted, .overloaded, "the server allows \(settings.maxConcurrentStreams) requests in flight per connection", retryable: true)))
            }
            return actions
        case (.response, .ready(let maxStreams, var open)):
            state = .closed  // lets go of the state's copy, so the removal does not copy the set
            let removed = open.remove(frame.streamID) != nil
            state = .ready(maxStreams: maxStreams, open: open)
            return removed ? [response(frame)] : []  // not open: cancelled meanwhile, dropped
        case (.response, .draining(var open)):
            guard open.remove(frame.streamID) != nil else { return [] }
            state = open.isEmpty ? .closed : .draining(open: open)
            return open.isEmpty ? [response(frame), .close] : [response(frame)]
        case (.goAway, .ready(_, let open)), (.goAway, .draining(let open)):
            let goAway = (try? frame.message(as: WireGoAway.self)) ?? WireGoAway()
            // Streams above the last one the server accepted never ran: safe to retry elsewhere.
            let unserved = open.filter { $0 > goAway.lastStreamID }.sorted()
            let remaining = open.filter { $0 <= goAway.lastStreamID }
            state = remaining.isEmpty ? .closed : .draining(open: remaining)
            var actions: [Action] = []
            if !unserved.isEmpty {
                actions.append(.fail(streamIDs: unserved, status: .failure(.unavailable, .shuttingDown, "the server is draining this connection: \(goAway.status.message)", retryable: true)))
            }
            if remaining.isEmpty { actions.append(.close) }
            return actions
        case (.goAway, .awaitingSettings(let queued)):
            let goAway = (try? frame.message(as: WireGoAway.self)) ?? WireGoAway()
            state = .closed
            let ids = queued.map(\.0)
            return (ids.isEmpty ? [] : [.fail(streamIDs: ids, status: goAway.status.code == .ok ? .failure(.unavailable, .protocolError, "the server refused the connection") : goAway.status)]) + [.close]
        case (.ping, _) where !frame.flags.contains(.ack):
            return [.sendPong(frame.payload)]
        case (.ping, _):
            return []
        case (_, .closed):
            return []
        default:
            return protocolError("unexpected \(frame.type) frame from the server")
        }
    }

    /// The connection dropped: everything in flight fails. Requests the server may have run are
    /// retryable only if the call is idempotent, which the caller decides; Unwrap and KeyStatus are.
    public mutating func connectionClosed() -> Action {
        let ids: [UInt32]
        switch state {
        case .awaitingSettings(let queued): ids = queued.map(\.0)
        case .ready(_, let open), .draining(let open): ids = open.sorted()
        case .closed: ids = []
        }
        state = .closed
        return ids.isEmpty ? .none : .fail(streamIDs: ids, status: .failure(.unavailable, .unspecified, "the connection to fedbroker closed", retryable: true))
    }

    /// Whether a new request can go out on this connection now.
    public var canOpenStream: Bool {
        if case .ready(let maxStreams, let open) = state { return open.count < maxStreams && nextStreamID <= Frame.maximumStreamID }
        return false
    }

    public var isClosed: Bool {
        if case .closed = state { return true }
        return false
    }

    private mutating func allocate() -> UInt32 {
        defer { nextStreamID &+= 2 }  // odd ids (any parity is allowed); checked against the maximum before use
        return nextStreamID
    }

    private func response(_ frame: Frame) -> Action {
        guard let response = try? frame.message(as: WireResponse.self) else {
            return .complete(streamID: frame.streamID, response: .failure(.failure(.internal, .protocolError, "the server's RESPONSE is not a valid message")))
        }
        return .complete(streamID: frame.streamID, response: response)
    }

    private mutating func protocolError(_ message: String) -> [Action] {
        let failing = connectionClosed()
        return failing == .none ? [.close] : [failing, .close]
    }
}
