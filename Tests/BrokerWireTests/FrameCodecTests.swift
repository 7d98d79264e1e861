import BrokerWire
import Foundation
import NIOCore
import NIOEmbedded
import NIOTestUtils
import SwiftProtobuf
import Testing

@Suite struct FrameCodecTests {
    func encoded(_ frames: [Frame]) throws -> ByteBuffer {
        var out = ByteBuffer()
        for frame in frames { try FrameEncoder().encode(data: frame, out: &out) }
        return out
    }

    @Test func roundTripsThroughTheVerifierInEverySplit() throws {
        let request = WireRequest.with {
            $0.timeoutMs = 2_000
            $0.unwrap = .with { $0.blob = Data([1, 2, 3]); $0.context = Data("orders/1".utf8) }
        }
        let frames = [
            try Frame(type: .request, streamID: 1, message: request),
            Frame(type: .ping, streamID: 0, payload: ByteBuffer(bytes: [0, 1, 2, 3, 4, 5, 6, 7])),
            Frame(type: .cancel, streamID: 1),
        ]
        // Feeds the frames whole, byte by byte and in other splits, checking the decoder's contract.
        try ByteToMessageDecoderVerifier.verifyDecoder(
            inputOutputPairs: [(try encoded(frames), frames)], decoderFactory: { FrameDecoder(expectsPreface: false) })
        // With the preface in front, fed one byte at a time.
        let all = ConnectionPreface.bytes() + Array(try encoded(frames).readableBytesView)
        var decoder = FrameDecoder(expectsPreface: true)
        var buffer = ByteBuffer()
        var decoded: [Frame] = []
        for byte in all {
            buffer.writeInteger(byte)
            while let frame = try decoder.decode(buffer: &buffer) { decoded.append(frame) }
        }
        #expect(decoded == frames)
        #expect(try frames[0].message(as: WireRequest.self) == request)
    }

    func decodeAll(_ bytes: [UInt8], preface: Bool = true, maximum: Int = 1 << 20) throws -> [Frame] {
        var decoder = FrameDecoder(maximumPayloadLength: maximum, expectsPreface: preface)
        var buffer = ByteBuffer(bytes: bytes)
        var out: [Frame] = []
        while let frame = try decoder.decode(buffer: &buffer) { out.append(frame) }
        return out
    }

    @Test func refusesABadPrefaceAtTheFirstWrongByte() throws {
        #expect(throws: WireError.badPreface) { _ = try decodeAll(Array("GET / HTTP/1.1\r\n".utf8)) }
        #expect(throws: WireError.badPreface) { _ = try decodeAll([0x16, 0x03]) }  // a TLS ClientHello on a plaintext port
        #expect(throws: WireError.unsupportedVersion(2)) { _ = try decodeAll(ConnectionPreface.bytes(version: 2)) }
        #expect(try decodeAll(Array("FB".utf8)).isEmpty)  // a prefix of the preface: wait for more
    }

    @Test func refusesOversizedFramesFromTheHeaderAlone() throws {
        // Announces 2 GiB; only the 10-byte header is present. Refused at once, nothing buffered.
        let header: [UInt8] = [0x7f, 0xff, 0xff, 0xff, 0x01, 0x00, 0, 0, 0, 1]
        #expect(throws: WireError.frameTooLarge(length: 0x7fff_ffff, maximum: 1024)) {
            _ = try decodeAll(ConnectionPreface.bytes() + header, maximum: 1024)
        }
    }

    @Test func refusesUnknownTypesAndWrongStreams() throws {
        #expect(throws: WireError.unknownFrameType(0x42)) { _ = try decodeAll([0, 0, 0, 0, 0x42, 0, 0, 0, 0, 1], preface: false) }
        let requestOnZero = try encoded([Frame(type: .request, streamID: 0)])
        #expect(throws: WireError.frameOnWrongStream(.request, streamID: 0)) {
            _ = try decodeAll(Array(requestOnZero.readableBytesView), preface: false)
        }
        let pingOnStream = try encoded([Frame(type: .ping, streamID: 3)])
        #expect(throws: WireError.frameOnWrongStream(.ping, streamID: 3)) {
            _ = try decodeAll(Array(pingOnStream.readableBytesView), preface: false)
        }
    }

    @Test("Everything the header alone proves wrong is refused before the payload is waited for")
    func headerRules() throws {
        // The stream id's top bit is reserved.
        #expect(throws: WireError.reservedStreamBit(0x8000_0001)) {
            _ = try decodeAll([0, 0, 0, 0, 0x03, 0, 0x80, 0, 0, 1], preface: false)
        }
        // A PING carries exactly 8 bytes: refused from a header announcing 3 (nothing more sent).
        #expect(throws: WireError.invalidPayloadLength(.ping, length: 3)) { _ = try decodeAll([0, 0, 0, 3, 0x04, 0, 0, 0, 0, 0], preface: false) }
        #expect(throws: WireError.invalidPayloadLength(.ping, length: 9)) { _ = try decodeAll([0, 0, 0, 9, 0x04, 0, 0, 0, 0, 0], preface: false) }
        // A CANCEL carries none.
        #expect(throws: WireError.invalidPayloadLength(.cancel, length: 1)) { _ = try decodeAll([0, 0, 0, 1, 0x03, 0, 0, 0, 0, 1, 7], preface: false) }
        // Unknown flags pass through to the receiver, which ignores them.
        let flagged = try decodeAll([0, 0, 0, 0, 0x03, 0xFE, 0, 0, 0, 1], preface: false)
        #expect(flagged == [Frame(type: .cancel, flags: FrameFlags(rawValue: 0xFE), streamID: 1)])
        // The highest stream id is fine.
        #expect(try decodeAll([0, 0, 0, 0, 0x03, 0, 0x7F, 0xFF, 0xFF, 0xFF], preface: false).first?.streamID == Frame.maximumStreamID)
    }

    @Test("The server's decoder reports the preface as an event before any frame")
    func serverDecoderReportsThePreface() throws {
        let ping = Frame(type: .ping, streamID: 0, payload: ByteBuffer(bytes: [0, 1, 2, 3, 4, 5, 6, 7]))
        let bytes = ConnectionPreface.bytes() + Array(try encoded([ping]).readableBytesView)
        var decoder = ServerFrameDecoder()
        var buffer = ByteBuffer()
        var events: [ServerFrameDecoder.Event] = []
        for byte in bytes {
            buffer.writeInteger(byte)
            while let event = try decoder.decode(buffer: &buffer) { events.append(event) }
        }
        #expect(events == [.preface, .frame(ping)])
        var rude = ServerFrameDecoder()
        var http = ByteBuffer(string: "GET /")
        #expect(throws: WireError.badPreface) { _ = try rude.decode(buffer: &http) }
        var partial = ServerFrameDecoder()
        var fbr = ByteBuffer(string: "FBR")
        #expect(try partial.decode(buffer: &fbr) == nil)  // waits; the server's preface timer ends it
    }

    @Test func truncatedFramesWaitAndGarbagePayloadsAreTyped() throws {
        let frame = try Frame(type: .request, streamID: 7, message: WireRequest.with { $0.health = .init() })
        let bytes = Array(try encoded([frame]).readableBytesView)
        for cut in 0..<bytes.count {
            #expect(try decodeAll(Array(bytes.prefix(cut)), preface: false).isEmpty)
        }
        let garbage = Frame(type: .request, streamID: 9, payload: ByteBuffer(bytes: [0xff, 0xff, 0xff]))
        #expect(throws: WireError.malformedMessage(.request)) { _ = try garbage.message(as: WireRequest.self) }
    }

    @Test func statusHelpersCarryCodeReasonAndRetryability() {
        let status = WireStatus.failure(.unavailable, .vaultThrottled, "the customer's vault is throttling; retry", retryable: true, retryAfterMilliseconds: 1000)
        #expect(status.code == .unavailable)
        #expect(status.reason == .vaultThrottled)
        #expect(status.retryable)
        #expect(WireResponse.failure(status).status == status)
        #expect(WireStatus.ok.code == .ok)
    }
}
