import Foundation

/// Where the client assertion comes from: a managed-identity token from IMDS for
/// `api://AzureADTokenExchange`, or a projected service-account token file (AKS workload
/// identity). One source per FIC slot.
public protocol AssertionSource: Sendable {
    /// A stable name for cache keys and logs (never the token).
    var identity: String { get }
    /// A fresh assertion, fetched within `deadline`.
    func assertion(deadline: Date) async throws -> AccessToken
    /// Until when the FIC trusting this source may still be propagating (its creation plus the
    /// propagation window). Until then "no matching FIC" (AADSTS70021) is retried; after it,
    /// or when nil, it is a configuration error and fails at once.
    var credentialPropagatingUntil: Date? { get }
}

extension AssertionSource {
    public var credentialPropagatingUntil: Date? { nil }
}

/// The audience every managed-identity assertion is requested for.
public let tokenExchangeAudience = "api://AzureADTokenExchange"
