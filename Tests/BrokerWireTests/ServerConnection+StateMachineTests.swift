import BrokerWire
import NIOCore
import Testing

/// The server's per-connection rules as docs/protocol.md states them, one scenario per test,
/// as scripts of events and the actions they must produce. No sockets, no clock: timers are
/// events the test fires.
@Suite struct ServerConnectionStateMachineTests {
    func request(_ id: UInt32, timeoutMs: UInt32 = 0) throws -> Frame {
        try Frame(type: .request, streamID: id, message: WireRequest.with { $0.timeoutMs = timeoutMs; $0.health = .init() })
    }

    func makeStateMachine(maxStreams: UInt32 = 2, configure: (inout ServerConnectionStateMachine.Configuration) -> Void = { _ in })
        -> ServerConnectionStateMachine
    {
        var configuration = ServerConnectionStateMachine.Configuration()
        configuration.maximumConcurrentStreams = maxStreams
        configure(&configuration)
        return ServerConnectionStateMachine(configuration: configuration)
    }

    /// A machine past the preface, with its SETTINGS checked.
    func active(maxStreams: UInt32 = 2, configure: (inout ServerConnectionStateMachine.Configuration) -> Void = { _ in }) -> ServerConnectionStateMachine {
        var machine = makeStateMachine(maxStreams: maxStreams, configure: configure)
        #expect(machine.connectionStarted(serverVersion: "test") == .none)
        guard case .sendSettings(let settings) = machine.prefaceReceived() else { Issue.record("no settings"); return machine }
        #expect(settings.maxConcurrentStreams == maxStreams)
        #expect(settings.protocolVersion == 1)
        #expect(settings.serverVersion == "test")
        return machine
    }

    @Test("SETTINGS is sent only once a valid preface arrived, never on connect")
    func settingsFollowThePreface() {
        var m = makeStateMachine()
        #expect(m.connectionStarted(serverVersion: "v") == .none)
        #expect(m.timer?.kind == .preface)
        guard case .sendSettings = m.prefaceReceived() else { Issue.record("no settings after the preface"); return }
        #expect(m.timer?.kind == .idle)  // nothing in flight yet
    }

    @Test("A wrong preface closes with nothing sent; a wrong version gets GOAWAY(UNIMPLEMENTED) and no SETTINGS")
    func wrongPrefaces() {
        var wrong = makeStateMachine()
        _ = wrong.connectionStarted(serverVersion: "v")
        #expect(wrong.decodingFailed(.badPreface) == .close)
        #expect(wrong.isClosed)

        var version = makeStateMachine()
        _ = version.connectionStarted(serverVersion: "v")
        guard case .sendGoAway(let goAway, thenClose: true) = version.decodingFailed(.unsupportedVersion(9)) else { Issue.record("silent"); return }
        #expect(goAway.status.code == .unimplemented)
        #expect(goAway.status.reason == .protocolError)
        #expect(goAway.lastStreamID == 0)
        #expect(version.prefaceReceived() == .none)  // closed: no SETTINGS ever
    }

    @Test("A partial preface ('FBR') is closed when the preface timer fires, silently")
    func partialPrefaceTimesOut() throws {
        var m = makeStateMachine { $0.prefaceTimeout = 2 }
        _ = m.connectionStarted(serverVersion: "v")
        let timer = try #require(m.timer)
        #expect(timer.kind == .preface)
        #expect(timer.seconds == 2)
        #expect(m.timerFired(timer) == .close)
        #expect(m.isClosed)
        #expect(m.timer == nil)
    }

    @Test("A connection over its caller's cap gets GOAWAY(refusal) instead of SETTINGS once its preface arrives")
    func refusedConnection() {
        var m = makeStateMachine()
        let refusal = WireStatus.failure(.resourceExhausted, .overloaded, "too many", retryable: true, retryAfterMilliseconds: 1000)
        _ = m.connectionStarted(serverVersion: "v", refusal: refusal)
        guard case .sendGoAway(let goAway, thenClose: true) = m.prefaceReceived() else { Issue.record("not refused"); return }
        #expect(goAway.status == refusal)
        #expect(goAway.lastStreamID == 0)
        #expect(m.isClosed)
    }

    @Test("Requests are dispatched up to the stream limit; one more is refused OVERLOADED with a retry_after_ms")
    func streamLimit() throws {
        var m = active(maxStreams: 2) { $0.overloadedRetryAfterMilliseconds = 250 }
        #expect(m.frameReceived(try request(1)) == .dispatch(streamID: 1, request: .with { $0.health = .init() }))
        #expect(m.frameReceived(try request(3)) == .dispatch(streamID: 3, request: .with { $0.health = .init() }))
        guard case .refuse(5, let status) = m.frameReceived(try request(5)) else { Issue.record("not refused"); return }
        #expect(status.code == .resourceExhausted)
        #expect(status.reason == .overloaded)
        #expect(status.retryable)
        #expect(status.retryAfterMs == 250)
        #expect(m.responseSent(streamID: 5) == .none)  // a refused stream never counted
        #expect(m.openStreams == 2)
    }

    @Test("A stream stops counting when its RESPONSE is sent or its CANCEL arrives")
    func whenAStreamStopsCounting() throws {
        var m = active(maxStreams: 1)
        _ = m.frameReceived(try request(1))
        #expect(m.responseSent(streamID: 1) == .none)
        #expect(m.openStreams == 0)
        _ = m.frameReceived(try request(3))
        #expect(m.frameReceived(Frame(type: .cancel, streamID: 3)) == .cancel(streamID: 3))
        #expect(m.openStreams == 0)
        if case .dispatch(5, _) = m.frameReceived(try request(5)) {} else { Issue.record("the slot was not freed by CANCEL") }
    }

    @Test("Stream ids: any parity, strictly increasing; a reused or lower id is a connection error")
    func streamIDsMustIncrease() throws {
        var m = active(maxStreams: 8)
        if case .dispatch(2, _) = m.frameReceived(try request(2)) {} else { Issue.record("an even id was refused") }
        if case .dispatch(7, _) = m.frameReceived(try request(7)) {} else { Issue.record("a gap was refused") }
        guard case .sendGoAway(let goAway, thenClose: true) = m.frameReceived(try request(7)) else { Issue.record("reuse accepted"); return }
        #expect(goAway.status.code == .invalidArgument)
        #expect(goAway.status.reason == .protocolError)
        #expect(goAway.status.retryable == false)
        #expect(goAway.lastStreamID == 7)
        #expect(m.frameReceived(try request(9)) == .none)  // closed: nothing more
    }

    @Test("The highest stream id is accepted; the reserved bit is the decoder's to refuse")
    func highestStreamID() throws {
        var m = active()
        if case .dispatch(Frame.maximumStreamID, _) = m.frameReceived(try request(Frame.maximumStreamID)) {} else { Issue.record("refused") }
    }

    @Test("A refused or garbage REQUEST still counts as seen: GOAWAY's last_stream_id covers it")
    func refusedStreamsAreBelowLastStreamID() throws {
        var m = active(maxStreams: 1)
        _ = m.frameReceived(try request(1))
        guard case .refuse(3, _) = m.frameReceived(Frame(type: .request, streamID: 3, payload: ByteBuffer(bytes: [0xff]))) else {
            Issue.record("garbage dispatched")
            return
        }
        guard case .sendGoAway(let goAway, thenClose: false) = m.drain() else { Issue.record("no goaway"); return }
        #expect(goAway.lastStreamID == 3)
    }

    @Test("Garbage or method-less requests are refused on their stream only")
    func garbageRequestsAreRefusedOnTheirStreamOnly() throws {
        var m = active()
        guard case .refuse(1, let status) = m.frameReceived(Frame(type: .request, streamID: 1, payload: ByteBuffer(bytes: [0xff, 0xff])))
        else { Issue.record("garbage dispatched"); return }
        #expect(status.code == .invalidArgument)
        #expect(status.reason == .protocolError)
        guard case .refuse(3, _) = m.frameReceived(Frame(type: .request, streamID: 3)) else { Issue.record("empty dispatched"); return }
        if case .dispatch(5, _) = m.frameReceived(try request(5)) {} else { Issue.record("connection died") }
    }

    @Test("CANCEL of an answered stream is ignored; of a stream never opened, a connection error")
    func cancelRules() throws {
        var m = active()
        _ = m.frameReceived(try request(1))
        #expect(m.frameReceived(Frame(type: .cancel, streamID: 1)) == .cancel(streamID: 1))
        #expect(m.frameReceived(Frame(type: .cancel, streamID: 1)) == .none)  // late cancel: harmless
        _ = m.frameReceived(try request(3))
        #expect(m.responseSent(streamID: 3) == .none)
        #expect(m.frameReceived(Frame(type: .cancel, streamID: 3)) == .none)  // crossed its RESPONSE
        guard case .sendGoAway(let goAway, thenClose: true) = m.frameReceived(Frame(type: .cancel, streamID: 9)) else {
            Issue.record("a CANCEL of a stream never opened was accepted")
            return
        }
        #expect(goAway.status.reason == .protocolError)
        #expect(goAway.lastStreamID == 3)
    }

    @Test("PING is echoed with ACK; a PING ACK (the server sends no PINGs) is ignored; unknown flags are ignored")
    func pingsAndFlags() throws {
        var m = active()
        let payload = ByteBuffer(bytes: [1, 2, 3, 4, 5, 6, 7, 8])
        #expect(m.frameReceived(Frame(type: .ping, streamID: 0, payload: payload)) == .sendPong(payload))
        #expect(m.frameReceived(Frame(type: .ping, flags: .ack, streamID: 0, payload: payload)) == .none)
        #expect(m.frameReceived(Frame(type: .ping, flags: FrameFlags(rawValue: 0xF0), streamID: 0, payload: payload)) == .sendPong(payload))
        var odd = try request(1)
        odd.flags = FrameFlags(rawValue: 0xFF)
        if case .dispatch(1, _) = m.frameReceived(odd) {} else { Issue.record("a REQUEST with unknown flags was refused") }
    }

    @Test("A client may not send RESPONSE, GOAWAY or SETTINGS")
    func serverOnlyFrames() {
        for type in [FrameType.response, .goAway, .settings] {
            var m = active()
            guard case .sendGoAway(let goAway, thenClose: true) = m.frameReceived(Frame(type: type, streamID: type == .response ? 1 : 0)) else {
                Issue.record("\(type) accepted")
                continue
            }
            #expect(goAway.status.reason == .protocolError)
        }
    }

    @Test("A decoding error after the preface ends the connection with GOAWAY(PROTOCOL_ERROR, last accepted stream)")
    func decodingErrorsAfterThePreface() throws {
        var m = active()
        _ = m.frameReceived(try request(1))
        guard case .sendGoAway(let goAway, thenClose: true) = m.decodingFailed(.invalidPayloadLength(.ping, length: 3)) else { Issue.record("silent"); return }
        #expect(goAway.status.code == .invalidArgument)
        #expect(goAway.status.reason == .protocolError)
        #expect(goAway.lastStreamID == 1)
    }

    @Test("Drain: GOAWAY(UNAVAILABLE, SHUTTING_DOWN, retryable) with the last stream; open streams finish; later ones refused; then close")
    func drain() throws {
        var m = active(maxStreams: 8)
        _ = m.frameReceived(try request(1))
        _ = m.frameReceived(try request(3))
        guard case .sendGoAway(let goAway, thenClose: false) = m.drain() else { Issue.record("no goaway"); return }
        #expect(goAway.lastStreamID == 3)
        #expect(goAway.status.code == .unavailable)
        #expect(goAway.status.reason == .shuttingDown)
        #expect(goAway.status.retryable)
        #expect(m.drain() == .none)  // one graceful GOAWAY only
        guard case .refuse(5, let status) = m.frameReceived(try request(5)) else { Issue.record("accepted while draining"); return }
        #expect(status.code == .unavailable && status.reason == .shuttingDown && status.retryable)
        #expect(m.responseSent(streamID: 5) == .none)
        #expect(m.responseSent(streamID: 1) == .none)
        #expect(m.responseSent(streamID: 3) == .close)
    }

    @Test("While draining a protocol error still gets its GOAWAY, with the same last_stream_id")
    func errorWhileDraining() throws {
        var m = active(maxStreams: 8)
        _ = m.frameReceived(try request(1))
        _ = m.drain()
        _ = m.frameReceived(try request(5))  // refused, above the announced last stream
        guard case .sendGoAway(let goAway, thenClose: true) = m.frameReceived(try request(5)) else { Issue.record("reuse accepted"); return }
        #expect(goAway.lastStreamID == 1)
        #expect(goAway.status.reason == .protocolError)
    }

    @Test("Drain with nothing open closes at once; before the preface it closes silently")
    func drainIdle() {
        var idle = active()
        guard case .sendGoAway(_, thenClose: true) = idle.drain() else { Issue.record("not closed"); return }
        var early = makeStateMachine()
        _ = early.connectionStarted(serverVersion: "v")
        #expect(early.drain() == .close)
    }

    @Test("The partial-frame timer runs while bytes of a frame are buffered, restarts with each complete frame, and ends the connection")
    func partialFrameTimer() throws {
        var m = active { $0.partialFrameTimeout = 3 }
        m.bytesBuffered(partialFrame: true)
        let first = try #require(m.timer)
        #expect(first.kind == .partialFrame)
        #expect(first.seconds == 3)
        m.bytesBuffered(partialFrame: true)  // more bytes of the same frame: the timer is not restarted
        #expect(m.timer == first)
        _ = m.frameReceived(try request(1))
        m.bytesBuffered(partialFrame: true)  // the next frame's first bytes: a fresh timer
        let second = try #require(m.timer)
        #expect(second.kind == .partialFrame)
        #expect(second != first)
        #expect(m.timerFired(first) == .none)  // stale
        guard case .sendGoAway(let goAway, thenClose: true) = m.timerFired(second) else { Issue.record("not closed"); return }
        #expect(goAway.status.code == .deadlineExceeded)
        #expect(goAway.status.reason == .protocolError)
        #expect(goAway.lastStreamID == 1)
        #expect(m.isClosed)
    }

    @Test("The idle timer runs only while nothing is in flight, and closes with a graceful GOAWAY")
    func idleTimer() throws {
        var m = active { $0.idleTimeout = 5 }
        #expect(m.timer?.kind == .idle)
        _ = m.frameReceived(try request(1))
        #expect(m.timer == nil)  // a request in flight: not idle
        _ = m.responseSent(streamID: 1)
        let idle = try #require(m.timer)
        #expect(idle.kind == .idle && idle.seconds == 5)
        _ = m.frameReceived(Frame(type: .ping, streamID: 0, payload: ByteBuffer(bytes: [0, 0, 0, 0, 0, 0, 0, 0])))
        let restarted = try #require(m.timer)
        #expect(restarted != idle)  // any frame restarts it
        guard case .sendGoAway(let goAway, thenClose: true) = m.timerFired(restarted) else { Issue.record("not closed"); return }
        #expect(goAway.status.code == .unavailable)
        #expect(goAway.status.reason == .shuttingDown)
        #expect(goAway.status.retryable)
        #expect(goAway.lastStreamID == 1)
    }

    @Test("timeout_ms: 0 takes the default, a larger one is cut to the maximum")
    func requestTimeouts() {
        var configuration = ServerConnectionStateMachine.Configuration()
        configuration.defaultRequestTimeout = 10
        configuration.maximumRequestTimeout = 60
        #expect(configuration.requestTimeout(milliseconds: 0) == 10)
        #expect(configuration.requestTimeout(milliseconds: 2_500) == 2.5)
        #expect(configuration.requestTimeout(milliseconds: UInt32.max) == 60)
    }

    @Test("An expired request is answered DEADLINE_EXCEEDED and its work stopped; an answered one is not")
    func expiredRequest() throws {
        var m = active()
        _ = m.frameReceived(try request(1, timeoutMs: 100))
        guard case .expire(1, let status) = m.deadlinePassed(streamID: 1) else { Issue.record("not expired"); return }
        #expect(status.code == .deadlineExceeded)
        #expect(status.retryable)
        #expect(m.responseSent(streamID: 1) == .none)
        #expect(m.deadlinePassed(streamID: 1) == .none)
        #expect(m.openStreams == 0)
    }

    @Test("The server's own frames are bounded by max_frame_size: an answer too large becomes INTERNAL")
    func responseFrameSize() throws {
        let m = active { $0.maximumFrameSize = 64 }
        let small = m.responseFrame(streamID: 1, response: .with { $0.status = .ok; $0.health = .with { $0.status = "SERVING" } })
        #expect(try small.message(as: WireResponse.self).health.status == "SERVING")
        let large = m.responseFrame(streamID: 3, response: .with { $0.status = .ok; $0.unwrap = .with { $0.keyID = String(repeating: "k", count: 500) } })
        #expect(large.payload.readableBytes <= 64)
        #expect(try large.message(as: WireResponse.self).status.code == .internal)
    }
}
