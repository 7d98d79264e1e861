import NIOCore

/// Decodes frames from a byte stream, refusing oversized ones before buffering them (a peer
/// announcing a 2 GiB frame costs 10 bytes, not 2 GiB). On the server side it first expects the
/// connection preface. A plain struct: tested with NIO's `ByteToMessageDecoderVerifier`.
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
            guard let preface = buffer.getBytes(at: buffer.readerIndex, length: ConnectionPreface.length) else {
                // Fail early on the first wrong byte rather than waiting for six.
                let available = buffer.readableBytesView.prefix(ConnectionPreface.magic.count)
                guard available.elementsEqual(ConnectionPreface.magic.prefix(available.count)) else { throw WireError.badPreface }
                return nil
            }
            guard Array(preface.prefix(4)) == ConnectionPreface.magic else { throw WireError.badPreface }
            let version = UInt16(preface[4]) << 8 | UInt16(preface[5])
            guard version == ConnectionPreface.currentVersion else { throw WireError.unsupportedVersion(version) }
            buffer.moveReaderIndex(forwardBy: ConnectionPreface.length)
            expectsPreface = false
        }
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return nil }
        guard length <= maximumPayloadLength else { throw WireError.frameTooLarge(length: Int(length), maximum: maximumPayloadLength) }
        guard let typeByte = buffer.getInteger(at: buffer.readerIndex + 4, as: UInt8.self) else { return nil }
        guard let type = FrameType(rawValue: typeByte) else { throw WireError.unknownFrameType(typeByte) }
        guard buffer.readableBytes >= Frame.headerLength + Int(length) else { return nil }
        buffer.moveReaderIndex(forwardBy: 5)
        let flags = FrameFlags(rawValue: buffer.readInteger(as: UInt8.self)!)
        let streamID = buffer.readInteger(as: UInt32.self)!
        let payload = buffer.readSlice(length: Int(length))!
        let frame = Frame(type: type, flags: flags, streamID: streamID, payload: payload)
        try Self.checkStream(frame)
        return frame
    }

    public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> Frame? {
        try decode(buffer: &buffer)
    }

    /// Connection frames live on stream 0; request frames never do.
    static func checkStream(_ frame: Frame) throws {
        switch frame.type {
        case .request, .response, .cancel:
            guard frame.streamID != 0 else { throw WireError.frameOnWrongStream(frame.type, streamID: 0) }
        case .ping, .goAway, .settings:
            guard frame.streamID == 0 else { throw WireError.frameOnWrongStream(frame.type, streamID: frame.streamID) }
        }
    }
}

/// Encodes frames (and, once, the client's preface is written by the client itself).
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
