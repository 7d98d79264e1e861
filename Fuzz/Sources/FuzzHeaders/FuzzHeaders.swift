import AzureWire
import FedBrokerCore
import Foundation

private let now = Date(timeIntervalSince1970: 1_750_000_000)

private func require(_ condition: Bool, _ what: @autoclosure () -> String) {
    if !condition { fatalError("invariant: \(what())") }
}

/// Any bytes (as UTF-8, invalid sequences replaced) as a `Retry-After` value and as a
/// `WWW-Authenticate` header. Asserts: nothing traps; a Retry-After is nil or finite within
/// `0...RetryAfter.maximumSeconds` (so every later conversion to milliseconds fits); a challenge
/// names an https authority, a tenant of `[A-Za-z0-9._-]` and a resource without control or
/// space characters, all bounded.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHeaders(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    if let seconds = parseRetryAfter(text, now: now) {
        require(seconds.isFinite && seconds >= 0 && seconds <= RetryAfter.maximumSeconds, "Retry-After \(seconds) not clamped")
        require(UInt32(exactly: (seconds * 1000).rounded(.up)) != nil, "Retry-After does not fit UInt32 milliseconds")
    }
    if let challenge = BearerChallenge(header: text) {
        require(challenge.authorization.utf8.count <= AzureWireLimits.maximumIdentifierLength, "authorization length")
        require(URL(string: challenge.authorization)?.scheme == "https", "authorization is not https")
        require((1...128).contains(challenge.tenantID.utf8.count), "tenant length")
        require(
            challenge.tenantID.utf8.allSatisfy {
                ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A) || $0 == 0x2E || $0 == 0x5F || $0 == 0x2D
            }, "tenant grammar")
        require(!challenge.resource.isEmpty && challenge.resource.utf8.count <= AzureWireLimits.maximumIdentifierLength, "resource length")
        require(!challenge.resource.unicodeScalars.contains { $0.value <= 0x20 || $0.value == 0x7F }, "resource control characters")
    }
    return 0
}
