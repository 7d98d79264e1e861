import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Plaintext key material held in memory the broker owns: one allocation, never copied by
/// copy-on-write, zeroed when released, never printed. The only place a plaintext data key
/// lives between the vault's answer and the caller's response (ARCHITECTURE invariant 3).
public final class SecretBytes: @unchecked Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    private let storage: UnsafeMutableRawBufferPointer

    public init<Bytes: Collection>(_ bytes: Bytes) where Bytes.Element == UInt8 {
        storage = .allocate(byteCount: max(bytes.count, 1), alignment: 1)
        storage.initializeMemory(as: UInt8.self, repeating: 0)
        _ = storage.initializeMemory(as: UInt8.self, from: bytes)
        count = bytes.count
    }

    public let count: Int

    /// Lends the bytes for the duration of `body` (to encrypt with them, or to write them into
    /// a response). Do not let them escape.
    public func withBytes<T>(_ body: (UnsafeRawBufferPointer) throws -> T) rethrows -> T {
        try body(UnsafeRawBufferPointer(rebasing: storage[0..<count]))
    }

    /// A copy as an array, for APIs that need one (the copy is the caller's to handle).
    public var bytes: [UInt8] { withBytes { Array($0) } }

    deinit {
        // explicit_bzero is not elided by the optimizer, unlike a plain memset before free.
        #if canImport(Glibc)
        if let base = storage.baseAddress { explicit_bzero(base, storage.count) }
        #else
        if let base = storage.baseAddress { _ = memset_s(base, storage.count, 0, storage.count) }
        #endif
        storage.deallocate()
    }

    public var description: String { "SecretBytes(<\(count) bytes>)" }
    public var debugDescription: String { description }
}

extension SecretBytes: Equatable {
    /// Constant-time comparison (for tests and the round-trip check).
    public static func == (lhs: SecretBytes, rhs: SecretBytes) -> Bool {
        guard lhs.count == rhs.count else { return false }
        return lhs.withBytes { a in
            rhs.withBytes { b in
                var difference: UInt8 = 0
                for i in 0..<a.count { difference |= a[i] ^ b[i] }
                return difference == 0
            }
        }
    }
}

extension Array where Element == UInt8 {
    /// Overwrites the bytes in place (a key's copy that an API handed us as an array). Only the
    /// buffer this array uniquely owns is cleared: call it once the other holders are done.
    mutating func zeroize() {
        withUnsafeMutableBytes { buffer in
            guard let base = buffer.baseAddress else { return }
            #if canImport(Glibc)
            explicit_bzero(base, buffer.count)
            #else
            _ = memset_s(base, buffer.count, 0, buffer.count)
            #endif
        }
    }
}
