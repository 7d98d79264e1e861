import BrokerWire
import NIOCore
import Testing

@Suite struct ServerConnectionStateMachineTests {
    func request(_ id: UInt32) throws -> Frame {
        try Frame(type: .request, streamID: id, message: WireRequest.with { $0.health = .init() })
    }

    func active(maxStreams: UInt32 = 2) -> ServerConnectionStateMachine {
        var configuration = ServerConnectionStateMachine.Configuration()
        configuration.maximumConcurrentStreams = maxStreams
        var machine = ServerConnectionStateMachine(configuration: configuration)
        guard case .sendSettings(let settings) = machine.connectionStarted(serverVersion: "test") else { Issue.record("no settings"); return machine }
        #expect(settings.maxConcurrentStreams == maxStreams)
        #expect(settings.protocolVersion == 1)
        return machine
    }

    @Test func dispatchesRequestsAndRefusesPastTheStreamLimit() throws {
        var m = active(maxStreams: 2)
        #expect(m.frameReceived(try request(1)) == .dispatch(streamID: 1, request: .with { $0.health = .init() }))
        #expect(m.frameReceived(try request(3)) == .dispatch(streamID: 3, request: .with { $0.health = .init() }))
        guard case .refuse(5, let status) = m.frameReceived(try request(5)) else { Issue.record("not refused"); return }
        #expect(status.code == .resourceExhausted)
        #expect(status.reason == .overloaded)
        #expect(status.retryable)
        #expect(m.responseSent(streamID: 1) == .none)
        if case .dispatch(7, _) = m.frameReceived(try request(7)) {} else { Issue.record("not dispatched after room freed") }
        #expect(m.openStreams == 2)
    }

    @Test func streamIDsMustIncrease() throws {
        var m = active()
        _ = m.frameReceived(try request(5))
        guard case .sendGoAway(let goAway, thenClose: true) = m.frameReceived(try request(5)) else { Issue.record("reuse accepted"); return }
        #expect(goAway.status.reason == .protocolError)
        #expect(goAway.lastStreamID == 5)
        #expect(m.frameReceived(try request(9)) == .none)  // closed: nothing more
    }

    @Test func garbageRequestsAreRefusedOnTheirStreamOnly() throws {
        var m = active()
        guard case .refuse(1, let status) = m.frameReceived(Frame(type: .request, streamID: 1, payload: ByteBuffer(bytes: [0xff, 0xff])))
        else { Issue.record("garbage dispatched"); return }
        #expect(status.code == .invalidArgument)
        // An empty Request (no method) too; the connection lives on.
        guard case .refuse(3, _) = m.frameReceived(Frame(type: .request, streamID: 3)) else { Issue.record("empty dispatched"); return }
        if case .dispatch(5, _) = m.frameReceived(try request(5)) {} else { Issue.record("connection died") }
    }

    @Test func cancelPingAndClientSentServerFrames() throws {
        var m = active()
        _ = m.frameReceived(try request(1))
        #expect(m.frameReceived(Frame(type: .cancel, streamID: 1)) == .cancel(streamID: 1))
        #expect(m.frameReceived(Frame(type: .cancel, streamID: 1)) == .none)  // late cancel: harmless
        let ping = ByteBuffer(bytes: [1, 2, 3, 4, 5, 6, 7, 8])
        #expect(m.frameReceived(Frame(type: .ping, streamID: 0, payload: ping)) == .sendPong(ping))
        #expect(m.frameReceived(Frame(type: .ping, flags: .ack, streamID: 0, payload: ping)) == .none)
        guard case .sendGoAway(_, thenClose: true) = m.frameReceived(Frame(type: .settings, streamID: 0)) else { Issue.record("accepted"); return }
    }

    @Test func drainFinishesOpenStreamsRefusesNewOnesThenCloses() throws {
        var m = active(maxStreams: 8)
        _ = m.frameReceived(try request(1))
        _ = m.frameReceived(try request(3))
        guard case .sendGoAway(let goAway, thenClose: false) = m.drain() else { Issue.record("no goaway"); return }
        #expect(goAway.lastStreamID == 3)
        #expect(goAway.status.reason == .shuttingDown)
        guard case .refuse(5, let status) = m.frameReceived(try request(5)) else { Issue.record("accepted while draining"); return }
        #expect(status.code == .unavailable && status.retryable)
        #expect(m.responseSent(streamID: 1) == .none)
        #expect(m.responseSent(streamID: 3) == .close)
    }

    @Test func drainWithNothingOpenClosesAtOnceAndBadPrefacesJustClose() {
        var idle = active()
        guard case .sendGoAway(_, thenClose: true) = idle.drain() else { Issue.record("not closed"); return }
        var fresh = ServerConnectionStateMachine()
        #expect(fresh.decodingFailed(.badPreface) == .close)
        var wrongVersion = ServerConnectionStateMachine()
        guard case .sendGoAway(let g, thenClose: true) = wrongVersion.decodingFailed(.unsupportedVersion(9)) else { Issue.record("silent"); return }
        #expect(g.status.code == .unimplemented)
        var running = active()
        guard case .sendGoAway(let h, thenClose: true) = running.decodingFailed(.frameTooLarge(length: 9, maximum: 1)) else { Issue.record("silent"); return }
        #expect(h.status.reason == .protocolError)
    }
}
