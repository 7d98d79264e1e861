import BrokerWire
import NIOCore
import SwiftProtobuf

private func require(_ condition: Bool, _ what: @autoclosure () -> String) {
    if !condition { fatalError("invariant: \(what())") }
}

/// What the connection handler would know: the streams it was told to serve and has not finished.
private struct Driver {
    var machine: ServerConnectionStateMachine
    var decoder: ServerFrameDecoder
    /// Dispatched, not yet answered, cancelled or expired.
    var serving: Set<UInt32> = []
    var everDispatched: Set<UInt32> = []
    var highestDispatched: UInt32 = 0
    var settingsSent = false
    var closing = false
    let answerAtOnce: Bool
    let expireAtOnce: Bool

    init(configuration: ServerConnectionStateMachine.Configuration, answerAtOnce: Bool, expireAtOnce: Bool) {
        machine = ServerConnectionStateMachine(configuration: configuration)
        decoder = ServerFrameDecoder(maximumPayloadLength: Int(configuration.maximumFrameSize))
        self.answerAtOnce = answerAtOnce
        self.expireAtOnce = expireAtOnce
    }

    /// Checks one action against the invariants and carries it out as the handler would.
    mutating func run(_ action: ServerConnectionStateMachine.Action, after frame: Frame? = nil) {
        switch action {
        case .sendSettings:
            require(!settingsSent, "SETTINGS sent twice")
            require(!closing, "SETTINGS after the connection was closing")
            settingsSent = true
        case .dispatch(let id, let request):
            require(settingsSent, "a request dispatched before SETTINGS")
            require(!closing, "a request dispatched on a closing connection")
            require(id != 0 && id <= Frame.maximumStreamID, "dispatched stream id \(id)")
            require(!everDispatched.contains(id), "stream \(id) dispatched twice")
            require(id > highestDispatched, "stream \(id) dispatched below \(highestDispatched)")
            require(request.method != nil, "a request without a method dispatched")
            require(frame?.streamID == id, "dispatch names stream \(id), not the frame's")
            serving.insert(id)
            everDispatched.insert(id)
            highestDispatched = id
            require(machine.openStreams <= Int(machine.configuration.maximumConcurrentStreams), "over the stream limit")
            if expireAtOnce {
                run(machine.deadlinePassed(streamID: id))
            } else if answerAtOnce {
                finish(id)
            }
        case .refuse(let id, let status):
            require(!everDispatched.contains(id), "stream \(id) both dispatched and refused")
            require(status.code != .ok, "a refusal with OK")
            require(frame?.streamID == id, "refusal names stream \(id), not the frame's")
        case .cancel(let id):
            require(serving.remove(id) != nil, "CANCEL action for stream \(id), which is not being served")
        case .expire(let id, let status):
            require(serving.contains(id), "expiry of stream \(id), which is not being served")
            require(status.code != .ok, "an expiry with OK")
            finish(id)
        case .sendPong(let payload):
            require(frame?.type == .ping && !(frame?.flags.contains(.ack) ?? true), "PONG without an unacknowledged PING")
            require(payload.readableBytes == Frame.pingPayloadLength, "PONG of \(payload.readableBytes) bytes")
        case .sendGoAway(let goAway, let thenClose):
            // Every stream processed is at or below last_stream_id: a client retries the others
            // elsewhere, so one above it would be processed twice.
            require(everDispatched.allSatisfy { $0 <= goAway.lastStreamID }, "GOAWAY last \(goAway.lastStreamID) below a dispatched stream")
            require(goAway.status.code != .ok, "GOAWAY with OK")
            if thenClose { closing = true }
        case .close:
            closing = true
        case .none:
            break
        }
        require(closing || machine.isClosed || machine.openStreams == serving.count,
            "the machine counts \(machine.openStreams) open streams, the driver serves \(serving.count)")
    }

    mutating func finish(_ id: UInt32) {
        serving.remove(id)
        let frame = machine.responseFrame(streamID: id, response: .failure(.failure(.unavailable, .unspecified, "fuzz")))
        require(frame.payload.readableBytes <= Int(machine.configuration.maximumFrameSize), "a response frame over max_frame_size")
        run(machine.responseSent(streamID: id))
    }
}

/// A connection's bytes through the server's decoder and state machine, as the channel handler
/// drives them. Input: byte 0 sets the read size (drip-feeding 1-64 bytes at a time), byte 1
/// picks driver behaviour (answer at once, expire at once, refuse the connection, drain after
/// N frames, fire the armed timer at the end), byte 2 is N; the rest is the stream. Asserts: no
/// trap; no action names a stream the machine did not accept; SETTINGS once, after the preface;
/// nothing dispatched after close or drain; GOAWAY's last id covers every dispatched stream;
/// the stream limit and max_frame_size hold; the decoder always makes progress.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzFrames(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 3 else { return 0 }
    let input = UnsafeBufferPointer(start: data, count: size)
    let readSize = Int(input[0] % 64) + 1
    let control = input[1]
    let drainAfter = Int(input[2] % 16)
    var configuration = ServerConnectionStateMachine.Configuration()
    configuration.maximumConcurrentStreams = 3
    configuration.maximumFrameSize = 4096
    var driver = Driver(configuration: configuration, answerAtOnce: control & 1 != 0, expireAtOnce: control & 2 != 0)
    let refusal: WireStatus? = control & 4 != 0 ? .failure(.resourceExhausted, .overloaded, "fuzz: too many connections") : nil
    driver.run(driver.machine.connectionStarted(serverVersion: "fuzz", refusal: refusal))

    var buffer = ByteBuffer()
    var offset = 3
    var frames = 0
    reading: while offset < size, !driver.closing {
        let end = min(size, offset + readSize)
        buffer.writeBytes(UnsafeBufferPointer(rebasing: input[offset..<end]))
        offset = end
        while !driver.closing {
            let before = buffer.readerIndex
            let event: ServerFrameDecoder.Event?
            do {
                event = try driver.decoder.decode(buffer: &buffer)
            } catch let error as WireError {
                driver.run(driver.machine.decodingFailed(error))
                break reading
            } catch {
                fatalError("the decoder threw a non-WireError: \(error)")
            }
            guard let event else { break }
            require(buffer.readerIndex > before, "the decoder returned an event without consuming bytes")
            switch event {
            case .preface:
                driver.run(driver.machine.prefaceReceived())
            case .frame(let frame):
                require(frame.payload.readableBytes <= Int(configuration.maximumFrameSize), "a frame over the maximum decoded")
                driver.run(driver.machine.frameReceived(frame), after: frame)
                frames += 1
                if control & 8 != 0, frames == drainAfter { driver.run(driver.machine.drain()) }
            }
        }
        driver.machine.bytesBuffered(partialFrame: buffer.readableBytes > 0)
        buffer.discardReadBytes()
    }
    if control & 16 != 0, !driver.closing, let timer = driver.machine.timer {
        driver.run(driver.machine.timerFired(timer))
    }
    // Whatever is still served ends as the handler ends it: answered.
    for id in driver.serving.sorted() where !driver.closing {
        driver.finish(id)
    }
    return 0
}
