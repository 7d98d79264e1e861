/// A connection-level protocol violation. The server answers it with GOAWAY(PROTOCOL_ERROR,
/// the reason) and closes that one connection; every other connection is unaffected.
public enum WireError: Error, Sendable, Equatable, CustomStringConvertible {
    case badPreface
    case unsupportedVersion(UInt16)
    case frameTooLarge(length: Int, maximum: Int)
    case unknownFrameType(UInt8)
    case frameOnWrongStream(FrameType, streamID: UInt32)
    case malformedMessage(FrameType)
    /// A stream id with the reserved top bit set.
    case reservedStreamBit(UInt32)
    /// A PING whose payload is not 8 bytes, or a CANCEL that carries one.
    case invalidPayloadLength(FrameType, length: Int)

    public var description: String {
        switch self {
        case .badPreface: "the connection did not start with the fedbroker preface (FBRK + version)"
        case .unsupportedVersion(let v): "protocol version \(v) is not supported (this server speaks \(ConnectionPreface.currentVersion))"
        case .frameTooLarge(let length, let maximum): "a frame of \(length) bytes exceeds the maximum of \(maximum)"
        case .unknownFrameType(let t): "frame type \(t) is unknown"
        case .frameOnWrongStream(let type, let id): "a \(type) frame may not use stream \(id)"
        case .malformedMessage(let type): "the \(type) frame's payload is not a valid message"
        case .reservedStreamBit(let id): "stream id \(id) has the reserved top bit set"
        case .invalidPayloadLength(let type, let length):
            type == .ping
                ? "a PING carries \(Frame.pingPayloadLength) bytes, not \(length)" : "a \(type) frame carries no payload, not \(length) bytes"
        }
    }
}
