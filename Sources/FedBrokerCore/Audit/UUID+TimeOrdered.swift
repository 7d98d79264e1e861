import Foundation

extension UUID {
    /// A version-7 UUID (RFC 9562 §5.7): 48 bits of Unix time in milliseconds, the version and
    /// variant bits, and 74 random bits.
    ///
    /// Audit record ids are made so because the audit table is append-only and indexed by id
    /// (unique: re-sent batches are dropped by `ON CONFLICT (id)`). A random (version 4) id lands
    /// each insert on a random page of that index, in SQLite and in PostgreSQL alike; once the index
    /// outgrows the cache, every insert reads and dirties a page of its own. A time-ordered id
    /// lands at the index's right edge, as the time and sequence indexes do. The id stays as
    /// unguessable as the record needs (74 random bits) and still names one record.
    ///
    /// `date` is the broker's own clock; one before 1970 or past the 48-bit range (year 10889) is
    /// clamped, not trapped on.
    public static func timeOrdered(at date: Date, using generator: inout some RandomNumberGenerator) -> UUID {
        let seconds = date.timeIntervalSince1970
        let milliseconds: UInt64 =
            seconds.isFinite ? UInt64(min(max(seconds * 1000, 0), Double((1 << 48) - 1))) : 0
        let high = milliseconds << 16 | 0x7000 | UInt64.random(in: 0...0xFFF, using: &generator)
        let low = UInt64.random(in: 0...UInt64.max, using: &generator) & 0x3FFF_FFFF_FFFF_FFFF | 0x8000_0000_0000_0000
        func byte(_ value: UInt64, _ index: Int) -> UInt8 { UInt8(truncatingIfNeeded: value >> UInt64(56 - 8 * index)) }
        return UUID(
            uuid: (
                byte(high, 0), byte(high, 1), byte(high, 2), byte(high, 3), byte(high, 4), byte(high, 5), byte(high, 6), byte(high, 7),
                byte(low, 0), byte(low, 1), byte(low, 2), byte(low, 3), byte(low, 4), byte(low, 5), byte(low, 6), byte(low, 7)
            ))
    }

    /// A version-7 UUID for `date`, from the system's random numbers (`PooledSystemRandom`).
    public static func timeOrdered(at date: Date) -> UUID {
        var generator = PooledSystemRandom()
        return timeOrdered(at: date, using: &generator)
    }
}
