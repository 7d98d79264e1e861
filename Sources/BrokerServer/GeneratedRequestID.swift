import Foundation
import FedBrokerCore
import Synchronization

/// Request ids the broker makes for requests that came without one: UUID-shaped (version 4,
/// lowercase, 36 characters), so logs and the audit trail read the same whichever side made the id.
///
/// Why not `UUID()`: on Linux, Foundation's `UUID()` opens, reads and closes `/dev/urandom` on
/// every call, three system calls that `perf` put at about 4 % of the broker's CPU on the cached
/// Unwrap path. A request id correlates log lines and audit rows; it is not a secret and guards
/// nothing. So the ids are a process counter passed through the SplitMix64 finalizer (a bijection
/// on 64 bits, so distinct counters give distinct words; the version and variant bits then leave
/// 122 bits, so repeats within a process are practically, not provably, impossible) with two seeds
/// drawn once from the system's random number generator, so two processes' ids do not line up.
/// They are predictable from one another, which a correlation id may be.
enum GeneratedRequestID {
    private static let seeds: (UInt64, UInt64) = {
        var generator = SystemRandomNumberGenerator()
        return (generator.next(), generator.next())
    }()
    private static let counter = Atomic<UInt64>(0)

    /// The next id: `xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx`.
    static func next() -> String {
        let n = counter.wrappingAdd(1, ordering: .relaxed).newValue
        let high = mix(seeds.0 &+ n) & 0xFFFF_FFFF_FFFF_0FFF | 0x4000
        let low = mix(seeds.1 &+ n) & 0x3FFF_FFFF_FFFF_FFFF | 0x8000_0000_0000_0000
        return UUID.lowercaseText(high: high, low: low)
    }

    /// SplitMix64's output function (Steele, Lea, Flood 2014).
    static func mix(_ value: UInt64) -> UInt64 {
        var z = value &* 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
