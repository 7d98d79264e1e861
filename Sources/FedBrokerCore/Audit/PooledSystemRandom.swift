#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// The system's random numbers, fetched 4 KiB at a time and handed out from a pool.
///
/// Why: `SystemRandomNumberGenerator` makes one `getrandom` system call per 64-bit word, and every
/// key operation draws two for its audit record's id (`UUID.timeOrdered`): `perf` put those calls
/// at about 1 % of the broker's CPU on the cached Unwrap path. The words are the kernel's random
/// numbers all the same (read from /dev/urandom), fetched 512 at a time. They make ids, not keys:
/// no secret is ever drawn from this pool.
struct PooledSystemRandom: RandomNumberGenerator {
    private static let pool = Mutex(Pool())

    mutating func next() -> UInt64 { Self.pool.withLock { $0.next() } }

    private struct Pool {
        private var words = [UInt64](repeating: 0, count: 512)
        private var index = 512

        mutating func next() -> UInt64 {
            if index == words.count {
                refill()
                index = 0
            }
            defer { index += 1 }
            return words[index]
        }

        private mutating func refill() {
            let filled = Self.readURandom(into: &words)
            // Where /dev/urandom could not be read, the standard generator fills the rest.
            var system = SystemRandomNumberGenerator()
            for word in (filled / 8)..<words.count { words[word] = system.next() }
        }

        /// Bytes read from /dev/urandom into `words`: all of them, or fewer where it cannot be
        /// read. (It is what SystemRandomNumberGenerator's getrandom reads too; Glibc's module
        /// does not declare getrandom itself.)
        private static func readURandom(into words: inout [UInt64]) -> Int {
            #if canImport(Glibc)
            let fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { return 0 }
            defer { close(fd) }
            return words.withUnsafeMutableBytes { buffer in
                var filled = 0
                while filled < buffer.count, let base = buffer.baseAddress {
                    let got = read(fd, base + filled, buffer.count - filled)
                    if got > 0 {
                        filled += got
                    } else if got >= 0 || errno != EINTR {
                        break
                    }
                }
                return filled
            }
            #else
            return 0
            #endif
        }
    }
}
