import NIOCore

/// Decodes frames from a byte stream, refusing oversized ones before buffering them (a peer
/// announcing a 2 GiB frame costs 10 bytes, not 2 GiB). Everything the header alone can prove
/// wrong (size, type, stream, a PING or CANCEL of the wrong length) is refused before the payload
/// is waited for. With `expectsPreface` it first consumes the connection preface (the server's
/// pipeline uses `ServerFrameDecoder`, which also reports the preface). A plain struct: tested
/// with NIO's `ByteToMessageDecoderVerifier` and fuzzed.
public struct FrameDecoder: NIOSingleStepByteToMessageDecoder {
    public typealias InboundOut = Frame

    public let maximumPayloadLength: Int
    private var expectsPreface: Bool

    public init(maximumPayloadLength: Int = 1 << 20, expectsPreface: Bool) {
        self.maximumPayloadLength = maximumPayloadLength
        self.expectsPreface = expectsPreface
    }

    public mutating func decode(buffer: inout ByteBuffer) throws -> Frame? {
        if expectsPreface {
            guard try ConnectionPreface.read(from: &buffer) else { return nil }
            expectsPreface = false
        }
        let start = buffer.readerIndex
        guard let length = buffer.getInteger(at: start, as: UInt32.self) else { return nil }
        guard length <= maximumPayloadLength else { throw WireError.frameTooLarge(length: Int(length), maximum: maximumPayloadLength) }
        guard let typeByte = buffer.getInteger(at: start + 4, as: UInt8.self) else { return nil }
        guard let type = FrameType(rawValue: typeByte) else { throw WireError.unknownFrameType(typeByte) }
        guard let flagsByte = buffer.getInteger(at: start + 5, as: UInt8.self),
            let streamID = buffer.getInteger(at: start + 6, as: UInt32.self)
        else { return nil }
        try Self.checkHeader(type: type, streamID: streamID, length: Int(length))
        guard let payload = buffer.getSlice(at: start + Frame.headerLength, length: Int(length)) else { return nil }
        buffer.moveReaderIndex(forwardBy: Frame.headerLength + Int(length))
        return Frame(type: type, flags: FrameFlags(rawValue: flagsByte), streamID: streamID, payload: payload)
    }

    public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> Frame? {
        try decode(buffer: &buffer)
    }

    /// Connection frames live on stream 0, request frames never do; the top bit of a stream id
    /// is reserved; a PING carries 8 bytes and a CANCEL none.
    static func checkHeader(type: FrameType, streamID: UInt32, length: Int) throws {
        guard streamID <= Frame.maximumStreamID else { throw WireError.reservedStreamBit(streamID) }
        switch type {
        case .request, .response, .cancel:
            guard streamID != 0 else { throw WireError.frameOnWrongStream(type, streamID: 0) }
        case .ping, .goAway, .settings:
            guard streamID == 0 else { throw WireError.frameOnWrongStream(type, streamID: streamID) }
        }
        switch type {
        case .ping where length != Frame.pingPayloadLength, .cancel where length != 0:
            throw WireError.invalidPayloadLength(type, length: length)
        default:
            break
        }
    }
}

/// Encodes frames (the client writes its preface itself, once, before any frame).
public struct FrameEncoder: MessageToByteEncoder {
    public typealias OutboundIn = Frame

    public init() {}

    public func encode(data frame: Frame, out: inout ByteBuffer) throws {
        out.writeInteger(UInt32(frame.payload.readableBytes))
        out.writeInteger(frame.type.rawValue)
        out.writeInteger(frame.flags.rawValue)
        out.writeInteger(frame.streamID)
        var payload = frame.payload
        out.writeBuffer(&payload)
    }
}
