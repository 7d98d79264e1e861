/// A connection-level protocol violation. The server answers it with GOAWAY(PROTOCOL_ERROR,
/// the reason) and closes that one connection; every other connection is unaffected.
public enum WireError: Error, Sendable, Equatable, CustomStringConvertible {
    case badPreface
    case unsupportedVersion(UInt16)
    case frameTooLarge(length: Int, maximum: Int)
    case unknownFrameType(UInt8)
    case frameOnWrongStream(FrameType, streamID: UInt32)
    case malformedMessage(FrameType)

    public var description: String {
        switch self {
        case .badPreface: "the connection did not start with the fedbroker preface (FBRK + version)"
        case .unsupportedVersion(let v): "protocol version \(v) is not supported (this server speaks \(ConnectionPreface.currentVersion))"
        case .frameTooLarge(let length, let maximum): "a frame of \(length) bytes exceeds the maximum of \(maximum)"
        case .unknownFrameType(let t): "frame type \(t) is unknown"
        case .frameOnWrongStream(let type, let id): "a \(type) frame may not use stream \(id)"
        case .malformedMessage(let type): "the \(type) frame's payload is not a valid message"
        }
    }
}
