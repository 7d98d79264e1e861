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
            var filled = 0
            #if canImport(Glibc)
            // /dev/urandom is what SystemRandomNumberGenerator's getrandom reads too; Glibc's
            // module does not declare getrandom itself.
            let fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC)
            if fd >= 0 {
                words.withUnsafeMutableBytes { buffer in
                    guard let base = buffer.baseAddress else { return }
                    while filled < buffer.count {
                        let got = read(fd, base + filled, buffer.count - filled)
                        if got > 0 {
                            filled += got
                        } else if got < 0 && errno == EINTR {
                            continue
                        } else {
                            break
                        }
                    }
                }
                close(fd)
            }
            #endif
            // Where /dev/urandom could not be read, the standard generator fills the rest.
            var system = SystemRandomNumberGenerator()
            for word in (filled / 8)..<words.count { words[word] = system.next() }
        }
    }
}
