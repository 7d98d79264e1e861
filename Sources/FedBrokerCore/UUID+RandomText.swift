import Foundation

extension UUID {
    /// A random (version 4) UUID in lowercase text, its 122 random bits from the pooled system
    /// generator (`PooledSystemRandom`): for request ids sent to Azure
    /// (`x-ms-client-request-id`), one per vault call. `UUID().uuidString.lowercased()` opened,
    /// read and closed /dev/urandom and formatted twice: about 11 µs of every call on this VM.
    public static func randomLowercaseText() -> String {
        var generator = PooledSystemRandom()
        let high = generator.next() & 0xFFFF_FFFF_FFFF_0FFF | 0x4000
        let low = generator.next() & 0x3FFF_FFFF_FFFF_FFFF | 0x8000_0000_0000_0000
        return lowercaseText(high: high, low: low)
    }
}
