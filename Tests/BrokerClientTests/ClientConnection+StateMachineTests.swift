import BrokerClient
import BrokerWire
import Foundation
import NIOCore
import SwiftProtobuf
import Testing

@Suite struct ClientConnectionStateMachineTests {
    let health = WireRequest.with { $0.health = .init() }

    func settings(_ maxStreams: UInt32) throws -> Frame {
        try Frame(type: .settings, streamID: 0, message: WireSettings.with { $0.maxConcurrentStreams = maxStreams; $0.maxFrameSize = 4096; $0.protocolVersion = 1 })
    }

    func response(_ id: UInt32) throws -> Frame {
        try Frame(type: .response, streamID: id, message: WireResponse.with { $0.status = .ok; $0.health = .with { $0.status = "SERVING" } })
    }

    @Test func queuesUntilSettingsThenHonoursTheStreamLimit() throws {
        var m = ClientConnectionStateMachine()
        #expect(!m.canOpenStream)
        let (first, action) = try m.startRequest(health)
        #expect(first == 1)
        #expect(action == .none)  // queued until SETTINGS
        _ = try m.startRequest(health)
        _ = try m.startRequest(health)
        let actions = m.frameReceived(try settings(2))
        #expect(actions.count == 3)
        #expect(actions[0] == .send(try Frame(type: .request, streamID: 1, message: health)))
        #expect(actions[1] == .send(try Frame(type: .request, streamID: 3, message: health)))
        guard case .fail([5], let status) = actions[2] else { Issue.record("third not refused"); return }
        #expect(status.retryable)
        #expect(m.maximumFrameSize == 4096)
        #expect(throws: ClientConnectionStateMachine.Refusal.streamLimitReached) { _ = try m.startRequest(health) }
        guard case .complete(1, let r) = m.frameReceived(try response(1)).first else { Issue.record("no completion"); return }
        #expect(r.health.status == "SERVING")
        #expect(m.canOpenStream)
        #expect(try m.startRequest(health).streamID == 7)  // ids keep increasing
    }

    @Test func cancelledStreamsIgnoreLateResponses() throws {
        var m = ClientConnectionStateMachine()
        _ = m.frameReceived(try settings(4))
        let (id, _) = try m.startRequest(health)
        #expect(m.cancel(streamID: id) == .send(Frame(type: .cancel, streamID: id)))
        #expect(m.frameReceived(try response(id)).isEmpty)
    }

    @Test func goAwayFailsUnservedStreamsAsRetryableAndLetsTheRestFinish() throws {
        var m = ClientConnectionStateMachine()
        _ = m.frameReceived(try settings(8))
        for _ in 0..<3 { _ = try m.startRequest(health) }  // 1, 3, 5
        let goAway = try Frame(type: .goAway, streamID: 0, message: WireGoAway.with {
            $0.lastStreamID = 3
            $0.status = .failure(.unavailable, .shuttingDown, "maintenance", retryable: true)
        })
        let actions = m.frameReceived(goAway)
        guard case .fail([5], let status) = actions.first else { Issue.record("stream 5 not failed"); return }
        #expect(status.retryable && status.reason == .shuttingDown)
        #expect(throws: ClientConnectionStateMachine.Refusal.notReady) { _ = try m.startRequest(health) }
        #expect(m.frameReceived(try response(1)).count == 1)
        let last = m.frameReceived(try response(3))
        #expect(last.last == .close)
        #expect(m.isClosed)
    }

    @Test func closeFailsEverythingInFlightAndPingsAreAnswered() throws {
        var m = ClientConnectionStateMachine()
        _ = m.frameReceived(try settings(8))
        _ = try m.startRequest(health)
        _ = try m.startRequest(health)
        let ping = ByteBuffer(bytes: [1, 2, 3, 4, 5, 6, 7, 8])
        #expect(m.frameReceived(Frame(type: .ping, streamID: 0, payload: ping)) == [.sendPong(ping)])
        guard case .fail([1, 3], let status) = m.connectionClosed() else { Issue.record("not failed"); return }
        #expect(status.code == .unavailable)
        #expect(m.connectionClosed() == .none)
    }

    @Test func aRequestOverTheServersFrameSizeIsRefusedUnsentAndNotRetryable() throws {
        let big = WireRequest.with { $0.unwrap = .with { $0.blob = Data(repeating: 7, count: 5_000) } }
        // Queued before SETTINGS: failed when SETTINGS says 4096, the others still go out.
        var m = ClientConnectionStateMachine()
        _ = try m.startRequest(health)
        _ = try m.startRequest(big)
        _ = try m.startRequest(health)
        let actions = m.frameReceived(try settings(8))
        #expect(actions.count == 3)
        #expect(actions[0] == .send(try Frame(type: .request, streamID: 1, message: health)))
        guard case .fail([3], let status) = actions[1] else { Issue.record("the big request was not failed: \(actions)"); return }
        #expect(status.code == .invalidArgument && !status.retryable)
        #expect(status.message.contains("at most 4096 bytes"))
        #expect(actions[2] == .send(try Frame(type: .request, streamID: 5, message: health)))
        // Once ready: refused at once, and the connection goes on.
        do throws(ClientConnectionStateMachine.Refusal) {
            _ = try m.startRequest(big)
            Issue.record("a request over max_frame_size was accepted")
        } catch .tooLarge(let bytes, let maximum) {
            #expect(bytes > 5_000 && maximum == 4096)
        } catch {
            Issue.record("refused as \(error), not tooLarge")
        }
        let (next, action) = try m.startRequest(health)
        guard case .send(let frame) = action else { Issue.record("not sent"); return }
        #expect(frame.streamID == next)
        guard case .fail(let failed, let closed) = m.connectionClosed() else { Issue.record("not failed"); return }
        #expect(failed == [1, 5, next])
        #expect(closed.reason == .unspecified, "a dropped connection says nothing about a vault")
    }

    @Test func aServerSpeakingNonsenseClosesTheConnection() throws {
        var m = ClientConnectionStateMachine()
        _ = try m.startRequest(health)
        let actions = m.frameReceived(try response(1))  // a RESPONSE before SETTINGS
        #expect(actions.last == .close)
        #expect(m.isClosed)
    }
}
