import Foundation
import Testing

@testable import FedBrokerCore

@Suite struct AccessReprobeScheduleTests {
    let lostAt = Date(timeIntervalSince1970: 1_800_000_000)
    let episode = RecordVersion(rawValue: 7)

    @Test("The standard schedule: one minute after the loss, then 2, 4, 8 minutes, then every 15 minutes")
    func standardDelays() {
        let schedule = AccessReprobeSchedule.standard
        #expect((0...6).map(schedule.delay(afterAttempts:)) == [60, 120, 240, 480, 900, 900, 900])
        #expect(schedule.delay(afterAttempts: Int.max) == 900, "no overflow however long the loss lasts")
    }

    @Test("Nothing is due before the first delay; then one probe per due time, each pushing the next out")
    func firstProbeAndBackoff() throws {
        let schedule = try AccessReprobeSchedule(minimumSeconds: 10, maximumSeconds: 35)
        var progress: AccessReprobeSchedule.Progress?
        var probes: [Double] = []
        // Ask every second for two minutes, as a replica's loop would.
        for second in 0...120 {
            let now = lostAt.addingTimeInterval(Double(second))
            let decision = schedule.advance(progress, lostAt: lostAt, episode: episode, now: now)
            if decision.probeNow { probes.append(Double(second)) }
            progress = decision.progress
        }
        // 10 s after the loss, then +20, +35 (capped), +35 …
        #expect(probes == [10, 30, 65, 100])
        #expect(progress?.attempts == 4)
    }

    @Test("Two replicas asking at the same moment: the second finds the probe taken")
    func oneProbePerDueTime() throws {
        let schedule = try AccessReprobeSchedule(minimumSeconds: 10, maximumSeconds: 60)
        let now = lostAt.addingTimeInterval(10)
        let first = schedule.advance(nil, lostAt: lostAt, episode: episode, now: now)
        let second = schedule.advance(first.progress, lostAt: lostAt, episode: episode, now: now)
        #expect(first.probeNow)
        #expect(!second.probeNow)
        #expect(second.progress == first.progress)
    }

    @Test("A tenant that changed since (a new loss, a new key version) starts a new episode from its first delay")
    func newEpisodeStartsOver() throws {
        let schedule = try AccessReprobeSchedule(minimumSeconds: 10, maximumSeconds: 60)
        let old = AccessReprobeSchedule.Progress(episode: episode, attempts: 5, nextProbeAt: lostAt.addingTimeInterval(3_600))
        let relost = lostAt.addingTimeInterval(100)
        let early = schedule.advance(old, lostAt: relost, episode: episode.next, now: relost.addingTimeInterval(5))
        #expect(!early.probeNow)
        #expect(early.progress == .init(episode: episode.next, attempts: 0, nextProbeAt: relost.addingTimeInterval(10)))
        let due = schedule.advance(early.progress, lostAt: relost, episode: episode.next, now: relost.addingTimeInterval(10))
        #expect(due.probeNow)
        #expect(due.progress.attempts == 1)
    }

    @Test("A due time further ahead than the maximum (the clock went back) counts as due")
    func clockWentBack() throws {
        let schedule = try AccessReprobeSchedule(minimumSeconds: 10, maximumSeconds: 60)
        let stuck = AccessReprobeSchedule.Progress(episode: episode, attempts: 2, nextProbeAt: lostAt.addingTimeInterval(86_400))
        #expect(schedule.advance(stuck, lostAt: lostAt, episode: episode, now: lostAt.addingTimeInterval(30)).probeNow)
    }

    @Test("A schedule that cannot work is refused", arguments: [(0.0, 10.0), (-1, 10), (20, 10), (.nan, 10), (1, .infinity)])
    func invalidSchedules(minimum: Double, maximum: Double) {
        #expect(throws: BrokerError(.invalidArgument, "")) {
            _ = try AccessReprobeSchedule(minimumSeconds: minimum, maximumSeconds: maximum)
        }
    }
}
