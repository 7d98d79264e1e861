import NIOCore

/// One frame of the fedbroker protocol (docs/protocol.md):
///
///     length u32 | type u8 | flags u8 | stream id u32 | payload (length bytes)
///
/// `length` counts the payload only. Stream 0 is the connection itself (SETTINGS, GOAWAY, PING).
public struct Frame: Sendable, Equatable {
    public var type: FrameType
    public var flags: FrameFlags
    public var streamID: UInt32
    public var payload: ByteBuffer

    public init(type: FrameType, flags: FrameFlags = [], streamID: UInt32, payload: ByteBuffer = ByteBuffer()) {
        self.type = type
        self.flags = flags
        self.streamID = streamID
        self.payload = payload
    }

    /// Bytes before the payload.
    public static let headerLength = 10
}

/// What a frame carries. Unknown types are a connection error (the peer speaks another protocol).
public enum FrameType: UInt8, Sendable, Equatable, CaseIterable {
    /// client → server, a new stream: a protobuf `Request`.
    case request = 0x01
    /// server → client, ends the stream: a protobuf `Response`.
    case response = 0x02
    /// client → server: the caller gave up on the stream; the server stops work on it.
    case cancel = 0x03
    /// either way, stream 0: 8 opaque bytes, echoed with the ACK flag.
    case ping = 0x04
    /// server → client, stream 0: a protobuf `GoAway`; no new streams above its last id.
    case goAway = 0x05
    /// server → client, stream 0, first frame after the preface: a protobuf `Settings`.
    case settings = 0x06
}

public struct FrameFlags: OptionSet, Sendable, Equatable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    /// On PING: this is the answer.
    public static let ack = FrameFlags(rawValue: 0x01)
}

/// The bytes a client sends once, before any frame: magic and protocol version.
public enum ConnectionPreface {
    public static let magic: [UInt8] = Array("FBRK".utf8)
    public static let currentVersion: UInt16 = 1
    public static let length = 6

    public static func bytes(version: UInt16 = currentVersion) -> [UInt8] {
        magic + [UInt8(version >> 8), UInt8(version & 0xff)]
    }
}
