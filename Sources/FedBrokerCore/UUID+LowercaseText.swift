import Foundation

extension UUID {
    /// The UUID in lowercase, `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`: how the store, the admin API
    /// and the logs write ids.
    ///
    /// Why not `uuidString.lowercased()`: that formats through `snprintf` and then copies the
    /// string again, and the audit shipper does it for every record it stores.
    public var lowercaseText: String {
        withUnsafeBytes(of: uuid) { bytes in
            Self.lowercaseText(
                high: UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
                low: UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self)))
        }
    }

    /// 32 hex digits of two words in the UUID's 8-4-4-4-12 grouping, written straight into the
    /// string's storage.
    public static func lowercaseText(high: UInt64, low: UInt64) -> String {
        String(unsafeUninitializedCapacity: 36) { buffer in
            let digits: StaticString = "0123456789abcdef"
            var index = 0
            for word in [high, low] {
                for shift in stride(from: 60, through: 0, by: -4) {
                    if index == 8 || index == 13 || index == 18 || index == 23 {
                        buffer[index] = UInt8(ascii: "-")
                        index += 1
                    }
                    buffer[index] = digits.utf8Start[Int(truncatingIfNeeded: (word >> UInt64(shift)) & 0xF)]
                    index += 1
                }
            }
            return index
        }
    }
}
