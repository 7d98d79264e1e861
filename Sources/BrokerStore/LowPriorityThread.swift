#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A thread for work no caller waits on, at a lowered CPU priority: a raised nice value, so that
/// when it and the threads answering key operations both want a core, the scheduler runs those
/// first and gives this one the rest.
///
/// Why: the journal's shipper reads its batches back from the segments and inserts them into
/// SQLite on threads of the broker's own process, a few milliseconds of CPU per batch of 500
/// records. At the answers' priority, on a
/// machine whose cores all answer, those bursts lengthened the answers' tail: at concurrency 16 a
/// cached Unwrap's p99 fell by about a tenth and its p99.9 by about a quarter once they ran here
/// (docs/operations.md, "The shipper's priority").
///
/// Linux keeps the nice value per thread (POSIX says per process), so `setpriority` for the
/// calling thread lowers this thread alone. Elsewhere the thread keeps the process's priority. A
/// process cannot raise a thread's priority back without `CAP_SYS_NICE`, so a thread lowered here
/// stays lowered: use it only for work that may wait.
enum LowPriorityThread {
    /// The nice value (the answers run at 0): the scheduler weighs 0 against 10 about ten to one.
    static let nice: Int32 = 10

    /// Lowers the calling thread. Returns whether it now runs at `nice` or a higher one (lower
    /// still: a process started under `nice` keeps its own).
    static func lowerCurrentThread() -> Bool {
        #if os(Linux)
        _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, nice)
        return currentNice() >= nice
        #else
        return false
        #endif
    }

    /// The calling thread's nice value (on Linux; the process's elsewhere).
    static func currentNice() -> Int32 {
        #if os(Linux)
        return getpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0)
        #else
        return getpriority(PRIO_PROCESS, 0)
        #endif
    }
}
