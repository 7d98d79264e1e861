import CFedBrokerSystem
import FedBrokerCore
#if canImport(Glibc)
import Glibc
#endif

/// What the process does to itself before it holds any key: no core dumps.
///
/// Why: plaintext data keys live in memory (zeroed after use where the broker owns the buffer,
/// but TLS and protobuf buffers hold copies for a while; docs/security.md). A core file would
/// write them to disk, and a dumpable process lets any process of the same user read its memory.
/// `RLIMIT_CORE` = 0 stops the core file; `PR_SET_DUMPABLE` = 0 also stops ptrace attach and
/// /proc/<pid>/mem reads by non-root processes. Both can be kept on for debugging
/// (`process.allowCoreDumps`).
public enum ProcessHardening {
    /// Turns core dumps off; throws if the kernel refuses.
    public static func disableCoreDumps() throws {
        #if os(Linux)
        var none = rlimit(rlim_cur: 0, rlim_max: 0)
        guard setrlimit(__rlimit_resource_t(RLIMIT_CORE.rawValue), &none) == 0 else {
            throw BrokerError(.invalidArgument, "setrlimit(RLIMIT_CORE, 0) failed: errno \(errno)")
        }
        guard fedbroker_set_non_dumpable() == 0 else {
            throw BrokerError(.invalidArgument, "prctl(PR_SET_DUMPABLE, 0) failed: errno \(errno)")
        }
        #endif
    }

    /// Whether the process may dump core (nil where the platform cannot tell).
    public static var isDumpable: Bool? {
        let state = fedbroker_is_dumpable()
        return state < 0 ? nil : state == 1
    }
}
