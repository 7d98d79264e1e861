import NIOCore

/// One frame of the fedbroker protocol (docs/protocol.md):
///
///     length u32 | type u8 | flags u8 | stream id u32 | payload (length bytes)
///
/// `length` counts the payload only. Stream 0 is the connection itself (SETTINGS, GOAWAY, PING).
/// The stream id's top bit is reserved: a frame with it set is a connection error, so a peer
/// that reads ids as signed 32-bit integers never sees a negative one.
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

    /// The highest stream id: a client that reaches it opens a new connection (ids never wrap).
    public static let maximumStreamID: UInt32 = 0x7FFF_FFFF

    /// A PING carries exactly this many opaque bytes.
    public static let pingPayloadLength = 8
}

/// What a frame carries. Unknown types are a connection error (the peer speaks another protocol).
public enum FrameType: UInt8, Sendable, Equatable, CaseIterable {
    /// client → server, a new stream: a protobuf `Request`.
    case request = 0x01
    /// server → client, ends the stream: a protobuf `Response`.
    case response = 0x02
    /// client → server, empty: the caller gave up on the stream; the server stops work on it.
    case cancel = 0x03
    /// client → server, stream 0: 8 opaque bytes, echoed with the ACK flag.
    case ping = 0x04
    /// server → client, stream 0: a protobuf `GoAway`; no stream above its last id was processed.
    case goAway = 0x05
    /// server → client, stream 0, the server's first frame, sent once a valid preface arrived:
    /// a protobuf `Settings`.
    case settings = 0x06
}

/// Flags a receiver does not know (every bit but ACK on PING) are ignored, so a later version
/// can define them without breaking older peers; senders set them to zero.
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

    /// Consumes the preface from `buffer`: true once all six bytes were there and right, false
    /// while a correct prefix waits for more. Throws at the first wrong byte (so an HTTP request
    /// or a TLS ClientHello on a plaintext port is refused at once) and for another version.
    public static func read(from buffer: inout ByteBuffer) throws(WireError) -> Bool {
        guard let preface = buffer.getBytes(at: buffer.readerIndex, length: length) else {
            let available = buffer.readableBytesView.prefix(magic.count)
            guard available.elementsEqual(magic.prefix(available.count)) else { throw .badPreface }
            return false
        }
        guard Array(preface.prefix(4)) == magic else { throw .badPreface }
        let version = UInt16(preface[4]) << 8 | UInt16(preface[5])
        guard version == currentVersion else { throw .unsupportedVersion(version) }
        buffer.moveReaderIndex(forwardBy: length)
        return true
    }
}
