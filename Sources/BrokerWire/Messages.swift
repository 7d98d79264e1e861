import NIOCore
import SwiftProtobuf

/// Short names for the generated protobuf types (Generated/fedbroker_v1_broker.pb.swift).
public typealias WireRequest = Fedbroker_V1_Request
public typealias WireResponse = Fedbroker_V1_Response
public typealias WireStatus = Fedbroker_V1_Status
public typealias WireStatusCode = Fedbroker_V1_StatusCode
public typealias WireReason = Fedbroker_V1_Reason
public typealias WireSettings = Fedbroker_V1_Settings
public typealias WireGoAway = Fedbroker_V1_GoAway

extension Frame {
    /// A frame carrying a protobuf message.
    public init(type: FrameType, flags: FrameFlags = [], streamID: UInt32, message: some SwiftProtobuf.Message) throws {
        let bytes: [UInt8] = try message.serializedBytes()
        self.init(type: type, flags: flags, streamID: streamID, payload: ByteBuffer(bytes: bytes))
    }

    /// The payload decoded as `M`; a payload that is not one is a protocol error.
    public func message<M: SwiftProtobuf.Message>(as _: M.Type) throws -> M {
        do {
            return try M(serializedBytes: Array(payload.readableBytesView))
        } catch {
            throw WireError.malformedMessage(type)
        }
    }
}

extension WireStatus {
    public static let ok = WireStatus.with { $0.code = .ok }

    /// A failure status: a canonical code, the broker's reason, a message an engineer can act on.
    public static func failure(
        _ code: WireStatusCode, _ reason: WireReason, _ message: String, retryable: Bool = false, retryAfterMilliseconds: UInt32 = 0
    ) -> WireStatus {
        .with {
            $0.code = code
            $0.reason = reason
            $0.message = message
            $0.retryable = retryable
            $0.retryAfterMs = retryAfterMilliseconds
        }
    }
}

extension WireResponse {
    public static func failure(_ status: WireStatus) -> WireResponse {
        .with { $0.status = status }
    }
}
