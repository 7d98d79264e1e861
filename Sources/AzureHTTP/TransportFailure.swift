import Foundation

/// Why a request got no HTTP answer.
public enum TransportFailure: Error, Sendable, Equatable, CustomStringConvertible {
    case deadlineExceeded
    case connectionFailed(String)
    case tls(String)
    /// The request itself is unusable (bad URL, unsupported scheme): a configuration error.
    case invalidRequest(String)

    public var description: String {
        switch self {
        case .deadlineExceeded: "the deadline passed before an answer came"
        case .connectionFailed(let why): "connection failed: \(why)"
        case .tls(let why): "TLS failed: \(why)"
        case .invalidRequest(let why): "invalid request: \(why)"
        }
    }

    /// Timeouts and resets are worth another try; a certificate the client does not trust is not.
    public var isRetryable: Bool {
        switch self {
        case .tls, .invalidRequest: false
        case .deadlineExceeded, .connectionFailed: true
        }
    }
}
