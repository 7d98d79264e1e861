import NIOCore

/// The server's view of a connection's bytes: first the preface, reported as its own event (the
/// server answers it with SETTINGS, so SETTINGS never goes to a peer that has not shown it speaks
/// this protocol), then frames. The frame rules are `FrameDecoder`'s.
public struct ServerFrameDecoder: NIOSingleStepByteToMessageDecoder {
    public enum Event: Sendable, Equatable {
        /// The six preface bytes arrived and are right.
        case preface
        case frame(Frame)
    }
    public typealias InboundOut = Event

    private var frames: FrameDecoder
    private var prefaceSeen = false

    public init(maximumPayloadLength: Int = 1 << 20) {
        frames = FrameDecoder(maximumPayloadLength: maximumPayloadLength, expectsPreface: false)
    }

    public mutating func decode(buffer: inout ByteBuffer) throws -> Event? {
        guard prefaceSeen else {
            guard try ConnectionPreface.read(from: &buffer) else { return nil }
            prefaceSeen = true
            return .preface
        }
        return try frames.decode(buffer: &buffer).map(Event.frame)
    }

    public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> Event? {
        try decode(buffer: &buffer)
    }
}
