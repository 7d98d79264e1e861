import Foundation

/// The bounds on a server's `Retry-After`, which comes from outside and so is clamped before any
/// wait, deadline or integer conversion sees it.
public enum RetryAfter {
    /// The longest wait a `Retry-After` may ask for, in seconds. Azure asks for seconds (Key Vault
    /// throttles per 10 s window, IMDS updates finish within 70 s, Entra and Graph ask for a few
    /// seconds), and no request the broker serves has a deadline anywhere near five minutes, so a
    /// longer hint could only park a caller until its deadline. The bound also keeps every later
    /// conversion safe: 300 s is 300,000 ms, far inside `UInt32`.
    public static let maximumSeconds: Double = 300

    /// The longest header value read. An IMF-fixdate is 29 characters and a sane delta a handful of
    /// digits; anything longer is not a `Retry-After` worth parsing.
    static let maximumLength = 64
}

/// Parses an HTTP `Retry-After` value (RFC 9110 §10.2.3): delta-seconds (digits only) or an
/// IMF-fixdate. The result is always finite and within `0...RetryAfter.maximumSeconds`; values
/// that are neither form (`inf`, `nan`, `-5`, `1e9`, prose) are no hint at all (nil), so the
/// caller falls back to its own backoff instead of trusting a garbled number.
public func parseRetryAfter(_ value: String?, now: Date) -> Double? {
    guard let value = value?.trimmingCharacters(in: .whitespaces), !value.isEmpty,
        value.utf8.count <= RetryAfter.maximumLength
    else { return nil }
    let seconds: Double
    if value.utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }) {
        // At most 64 digits: the Double may round, but it is finite and the clamp bounds it.
        guard let parsed = Double(value) else { return nil }
        seconds = parsed
    } else if let date = HTTPDate.parse(value) {
        seconds = date.timeIntervalSince(now)
    } else {
        return nil
    }
    guard seconds.isFinite else { return nil }
    return min(max(seconds, 0), RetryAfter.maximumSeconds)
}
