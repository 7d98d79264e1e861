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

    var throughput: Double { seconds > 0 ? Double(operations) / seconds : 0 }

    init(nanoseconds: [UInt64], seconds: Double, errors: Int) {
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
    }
}

/// The raw latencies of one or more measured windows, merged before percentiles are taken.
struct RawSample: Sendable {
    var nanoseconds: [UInt64] = []
    var seconds: Double = 0
    var errors = 0

    static func + (a: RawSample, b: RawSample) -> RawSample {
        .init(nanoseconds: a.nanoseconds + b.nanoseconds, seconds: a.seconds + b.seconds, errors: a.errors + b.errors)
    }
    var summary: LatencySample { LatencySample(nanoseconds: nanoseconds, seconds: seconds, errors: errors) }
}

/// Runs `concurrency` loops of `call` for `seconds` (after `warmup` seconds not counted) and
/// records each successful call's latency; failures in the window are counted apart.
func measure(
    concurrency: Int, seconds: Double, warmup: Double, _ call: @escaping @Sendable () async throws -> Void
) async -> RawSample {
    let start = DispatchTime.now().uptimeNanoseconds
    let measureFrom = start + UInt64(warmup * 1e9)
    let end = measureFrom + UInt64(seconds * 1e9)
    let results = await withTaskGroup(of: ([UInt64], Int).self) { group in
        for _ in 0..<concurrency {
            group.addTask {
                var latencies: [UInt64] = []
                latencies.reserveCapacity(1 << 14)
                var errors = 0
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
                    guard before >= measureFrom && after <= end else { continue }
                    // Only answers count: a fast refusal must not pass for throughput.
                    if succeeded { latencies.append(after - before) } else { errors += 1 }
                }
                return (latencies, errors)
            }
        }
        return await group.reduce(into: ([UInt64](), 0)) { $0.0 += $1.0; $0.1 += $1.1 }
    }
    return RawSample(nanoseconds: results.0, seconds: seconds, errors: results.1)
}
