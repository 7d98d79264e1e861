#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// Latencies of one measured run and what they add up to. Percentiles are exact (sorted
/// samples), not estimated: a run holds at most a few hundred thousand samples.
struct LatencySample: Codable, Sendable {
    var operations: Int
    var seconds: Double
    var p50Microseconds: Double
    var p99Microseconds: Double
    var p999Microseconds: Double
    var errors: Int
    /// The whole process's CPU time (every thread: client, server, journal, shipper, emulator) in
    /// the measured window, divided by the answers in it. It moves less than throughput when the
    /// machine's other load does, but not by nothing (about ±15 % between runs on a 2-core VM).
    var cpuMicrosecondsPerOperation: Double?
    /// The whole machine's busy CPU time (`/proc/stat`: every process, a PostgreSQL server on
    /// this machine included) in the measured window, divided by the answers in it: the process's
    /// own CPU leaves out the database server's. To compare stores, take it over the sustained
    /// span (`BenchResults.Sustained`), which includes the shipping after the window.
    var machineCPUMicrosecondsPerOperation: Double?

    var throughput: Double { seconds > 0 ? Double(operations) / seconds : 0 }

    init(nanoseconds: [UInt64], seconds: Double, errors: Int, cpuSeconds: Double? = nil, machineCPUSeconds: Double? = nil) {
        let sorted = nanoseconds.sorted()
        func percentile(_ p: Double) -> Double {
            guard !sorted.isEmpty else { return 0 }
            let index = min(sorted.count - 1, max(0, Int((p * Double(sorted.count)).rounded(.up)) - 1))
            return Double(sorted[index]) / 1000
        }
        self.operations = sorted.count
        self.seconds = seconds
        self.p50Microseconds = percentile(0.50)
        self.p99Microseconds = percentile(0.99)
        self.p999Microseconds = percentile(0.999)
        self.errors = errors
        self.cpuMicrosecondsPerOperation = microsecondsPerOperation(cpuSeconds, sorted.count)
        self.machineCPUMicrosecondsPerOperation = microsecondsPerOperation(machineCPUSeconds, sorted.count)
    }
}

/// The raw latencies of one or more measured windows, merged before percentiles are taken.
struct RawSample: Sendable {
    var nanoseconds: [UInt64] = []
    var seconds: Double = 0
    var errors = 0
    /// Process CPU seconds in the measured windows (`measure`); 0 where not taken.
    var cpuSeconds = 0.0
    /// The machine's busy CPU seconds in the measured windows; 0 where `/proc/stat` was not read.
    var machineCPUSeconds = 0.0
    /// Every answer of the calls, the warm-up's and those that ended past the window included
    /// (what the broker's journal had to ship).
    var answered = 0

    static func + (a: RawSample, b: RawSample) -> RawSample {
        .init(
            nanoseconds: a.nanoseconds + b.nanoseconds, seconds: a.seconds + b.seconds, errors: a.errors + b.errors,
            cpuSeconds: a.cpuSeconds + b.cpuSeconds, machineCPUSeconds: a.machineCPUSeconds + b.machineCPUSeconds,
            answered: a.answered + b.answered)
    }
    var summary: LatencySample {
        LatencySample(
            nanoseconds: nanoseconds, seconds: seconds, errors: errors, cpuSeconds: cpuSeconds > 0 ? cpuSeconds : nil,
            machineCPUSeconds: machineCPUSeconds > 0 ? machineCPUSeconds : nil)
    }
}

/// Runs `concurrency` loops of `call` for `seconds` (after `warmup` seconds not counted) and
/// records each successful call's latency; failures in the window are counted apart.
func measure(
    concurrency: Int, seconds: Double, warmup: Double, _ call: @escaping @Sendable () async throws -> Void
) async -> RawSample {
    let start = DispatchTime.now().uptimeNanoseconds
    let measureFrom = start + UInt64(warmup * 1e9)
    let end = measureFrom + UInt64(seconds * 1e9)
    // The process's CPU clock and the machine's busy time read at the window's two ends, beside
    // the callers.
    async let cpuSeconds: (process: Double, machine: Double) = {
        func sleep(until instant: UInt64) async {
            let now = DispatchTime.now().uptimeNanoseconds
            if instant > now { try? await Task.sleep(nanoseconds: instant - now) }
        }
        await sleep(until: measureFrom)
        let (before, machineBefore, from) = (processCPUSeconds(), machineBusySeconds(), DispatchTime.now().uptimeNanoseconds)
        await sleep(until: end)
        let (after, machine, to) = (processCPUSeconds(), machineBusySeconds(since: machineBefore), DispatchTime.now().uptimeNanoseconds)
        // Scaled to the nominal window: this task wakes late when the callers keep the threads busy.
        guard to > from else { return (0, 0) }
        let scale = seconds * 1e9 / Double(to - from)
        return ((after - before) * scale, machine * scale)
    }()
    let results = await withTaskGroup(of: ([UInt64], Int, Int).self) { group in
        for _ in 0..<concurrency {
            group.addTask {
                var latencies: [UInt64] = []
                latencies.reserveCapacity(1 << 14)
                var errors = 0
                var answered = 0
                while true {
                    let before = DispatchTime.now().uptimeNanoseconds
                    if before >= end { break }
                    let succeeded: Bool
                    do {
                        try await call()
                        succeeded = true
                    } catch {
                        succeeded = false
                    }
                    let after = DispatchTime.now().uptimeNanoseconds
                    if succeeded { answered += 1 }
                    guard before >= measureFrom && after <= end else { continue }
                    // Only answers count: a fast refusal must not pass for throughput.
                    if succeeded { latencies.append(after - before) } else { errors += 1 }
                }
                return (latencies, errors, answered)
            }
        }
        return await group.reduce(into: ([UInt64](), 0, 0)) { $0.0 += $1.0; $0.1 += $1.1; $0.2 += $1.2 }
    }
    let cpu = await cpuSeconds
    return RawSample(
        nanoseconds: results.0, seconds: seconds, errors: results.1, cpuSeconds: cpu.process, machineCPUSeconds: cpu.machine,
        answered: results.2)
}

/// `seconds` of CPU spread over `operations`, in µs each; nil without either.
func microsecondsPerOperation(_ seconds: Double?, _ operations: Int) -> Double? {
    guard let seconds, operations > 0 else { return nil }
    return seconds * 1e6 / Double(operations)
}

/// Seconds on the uptime clock the bench times everything by, since `start` (uptime nanoseconds).
func secondsSince(_ start: UInt64) -> Double { Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 }

/// CPU time used by every thread of this process so far (`clock()`: glibc reads the process's
/// CPU-time clock).
func processCPUSeconds() -> Double { Double(clock()) / Double(CLOCKS_PER_SEC) }

/// Busy CPU time of the whole machine so far: the first line of `/proc/stat` (user, nice, system,
/// idle, iowait, irq, softirq, steal, in clock ticks), all but idle and iowait. Nil where it
/// cannot be read or parsed (not Linux).
func machineBusySeconds() -> Double? {
    guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
        let line = text.split(separator: "\n", maxSplits: 1).first, line.hasPrefix("cpu ")
    else { return nil }
    let ticks = line.split(separator: " ").dropFirst().prefix(8).compactMap { Double($0) }
    guard ticks.count == 8 else { return nil }
    let perSecond = Double(sysconf(Int32(_SC_CLK_TCK)))
    guard perSecond > 0 else { return nil }
    return (ticks.reduce(0, +) - ticks[3] - ticks[4]) / perSecond
}

/// The machine's busy seconds since `before` (a `machineBusySeconds()` reading); 0 when either
/// reading failed, which the samples record as "not read".
func machineBusySeconds(since before: Double?) -> Double {
    guard let before, let now = machineBusySeconds() else { return 0 }
    return now - before
}
