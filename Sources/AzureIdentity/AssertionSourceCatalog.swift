import AsyncHTTPClient
import FedBrokerCore
import Foundation
import Synchronization

/// The assertion source of each managed identity, made once and shared by everyone who needs an
/// assertion for it (the serving path, slot jobs, readiness), so the assertion cache is shared too.
///
/// An identity's assertions come from IMDS (a VM or a pod with the identity attached), unless a
/// federated token file is configured for it: AKS workload identity projects a service-account
/// token into a file and rotates it; the file is re-read for every assertion and exchanged, in
/// the ISV tenant, for the identity's own token (`WorkloadIdentityAssertionSource`), which is
/// what the slot's FIC trusts. The service-account token never goes to the application's exchange.
public final class AssertionSourceCatalog: Sendable {
    public struct Configuration: Sendable {
        /// IMDS's base URL.
        public var imdsURL: String
        /// Federated token files by managed identity client id (lowercased).
        public var tokenFiles: [String: String]
        /// The longest one request (to IMDS, or for a token file to the token endpoint) may take
        /// before it is retried.
        public var attemptTimeout: Double
        /// Entra's authority: where a token file is exchanged for its identity's token.
        public var authorityURL: String
        /// The ISV's tenant, home of the managed identities, where that exchange is made. A token
        /// file cannot be used without it (its sources fail with `.tokenFile`).
        public var isvTenantID: String?

        public init(
            imdsURL: String, tokenFiles: [String: String] = [:], attemptTimeout: Double = 5,
            authorityURL: String = "https://login.microsoftonline.com", isvTenantID: String? = nil
        ) {
            self.imdsURL = imdsURL
            self.tokenFiles = Dictionary(tokenFiles.map { ($0.key.lowercased(), $0.value) }, uniquingKeysWith: { _, last in last })
            self.attemptTimeout = attemptTimeout
            self.authorityURL = authorityURL
            self.isvTenantID = isvTenantID
        }

        /// AKS workload identity's environment: `AZURE_FEDERATED_TOKEN_FILE` holds the token of the
        /// identity `AZURE_CLIENT_ID` names.
        public mutating func addWorkloadIdentity(from environment: [String: String]) {
            guard let file = environment["AZURE_FEDERATED_TOKEN_FILE"], !file.isEmpty,
                let client = environment["AZURE_CLIENT_ID"], !client.isEmpty
            else { return }
            if tokenFiles[client.lowercased()] == nil { tokenFiles[client.lowercased()] = file }
        }
    }

    let configuration: Configuration
    let httpClient: HTTPClient
    let clock: any WallClock
    private let sources = Mutex<[String: any AssertionSource]>([:])

    public init(configuration: Configuration, httpClient: HTTPClient, clock: any WallClock = SystemWallClock()) {
        self.configuration = configuration
        self.httpClient = httpClient
        self.clock = clock
    }

    /// The source for the managed identity `clientID`.
    public func source(forClientID clientID: String) -> any AssertionSource {
        let key = clientID.lowercased()
        return sources.withLock { cached in
            if let source = cached[key] { return source }
            let source: any AssertionSource =
                if let path = configuration.tokenFiles[key] {
                    workloadIdentitySource(clientID: clientID, path: path, propagatingUntil: nil)
                } else {
                    IMDSAssertionSource(
                        clientID: clientID, endpoint: configuration.imdsURL, httpClient: httpClient, clock: clock,
                        attemptTimeout: configuration.attemptTimeout)
                }
            cached[key] = source
            return source
        }
    }

    /// A source for an identity whose FIC was created moments ago: "no matching FIC" is retried
    /// until `propagatingUntil`. Not cached: only the proof of a new slot uses it.
    public func provingSource(forClientID clientID: String, propagatingUntil: Date) -> any AssertionSource {
        if let path = configuration.tokenFiles[clientID.lowercased()] {
            return workloadIdentitySource(clientID: clientID, path: path, propagatingUntil: propagatingUntil)
        }
        return IMDSAssertionSource(
            clientID: clientID, endpoint: configuration.imdsURL, httpClient: httpClient, clock: clock,
            attemptTimeout: configuration.attemptTimeout, credentialPropagatingUntil: propagatingUntil)
    }

    /// Whether assertions for `clientID` come from a token file.
    public func usesTokenFile(_ clientID: String) -> Bool { configuration.tokenFiles[clientID.lowercased()] != nil }

    private func workloadIdentitySource(clientID: String, path: String, propagatingUntil: Date?) -> WorkloadIdentityAssertionSource {
        WorkloadIdentityAssertionSource(
            clientID: clientID, tenantID: configuration.isvTenantID ?? "", tokenFile: path, authority: configuration.authorityURL,
            httpClient: httpClient, clock: clock, attemptTimeout: configuration.attemptTimeout,
            credentialPropagatingUntil: propagatingUntil)
    }
}
