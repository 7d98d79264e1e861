import AsyncHTTPClient
import FedBrokerCore
import Foundation
import NIOCore
import NIOPosix
import NIOSSL

/// Where Azure is, for the probe and the server alike: one configuration, from flags or
/// `FEDBROKER_*` environment variables (the emulator's env.sh sets them all).
public struct AzureEnvironment: Sendable, Equatable {
    /// `FEDBROKER_IMDS_URL`; the VM's IMDS by default.
    public var imdsURL: String
    /// `FEDBROKER_AUTHORITY_URL`; Entra's global cloud by default.
    public var authorityURL: String
    /// `FEDBROKER_GRAPH_URL`; Microsoft Graph by default.
    public var graphURL: String
    /// `FEDBROKER_APP_CLIENT_ID`: the ISV's multi-tenant application.
    public var applicationClientID: String?
    /// `FEDBROKER_CA_BUNDLE`: PEM certificates trusted in addition to the system's.
    public var caBundlePath: String?
    /// Token resources a vault's challenge may name: a challenge naming anything else (Graph,
    /// ARM) is refused, so a forged vault cannot obtain a token for another resource.
    public var vaultResources: [String]
    /// `FEDBROKER_VAULT_HOST_SUFFIXES` (comma-separated): the domains vault URLs may be on. Tokens
    /// are sent to no other host. Azure's Key Vault and Managed HSM domains by default.
    public var vaultHostSuffixes: [String]

    public static let azureVaultResources = ["https://vault.azure.net", "https://managedhsm.azure.net"]

    /// The token resource for a vault URL: Managed HSM takes tokens for its own resource, and
    /// refuses (401) a Key Vault token, which onboarding's probe (asking for what the challenge
    /// names) would not have shown. Everything else is Key Vault's, the emulator's vaults included.
    public static func vaultTokenResource(forVaultURL vaultURL: String) -> String {
        let host = URL(string: vaultURL)?.host?.lowercased() ?? ""
        return host.hasSuffix(".managedhsm.azure.net") ? "https://managedhsm.azure.net" : "https://vault.azure.net"
    }
    public static let azureVaultHostSuffixes = [
        ".vault.azure.net", ".managedhsm.azure.net", ".vault.azure.cn", ".managedhsm.azure.cn",
        ".vault.usgovcloudapi.net", ".managedhsm.usgovcloudapi.net",
    ]

    public init(
        imdsURL: String = "http://169.254.169.254", authorityURL: String = "https://login.microsoftonline.com",
        graphURL: String = "https://graph.microsoft.com", applicationClientID: String? = nil, caBundlePath: String? = nil,
        vaultResources: [String] = AzureEnvironment.azureVaultResources,
        vaultHostSuffixes: [String] = AzureEnvironment.azureVaultHostSuffixes
    ) {
        self.imdsURL = imdsURL
        self.authorityURL = authorityURL
        self.graphURL = graphURL
        self.applicationClientID = applicationClientID
        self.caBundlePath = caBundlePath
        self.vaultResources = vaultResources
        self.vaultHostSuffixes = vaultHostSuffixes
    }

    /// Reads `FEDBROKER_*` variables; what is unset keeps its Azure default.
    public static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> AzureEnvironment {
        var e = AzureEnvironment()
        func value(_ name: String) -> String? { environment[name].flatMap { $0.isEmpty ? nil : $0 } }
        if let v = value("FEDBROKER_IMDS_URL") { e.imdsURL = v }
        if let v = value("FEDBROKER_AUTHORITY_URL") { e.authorityURL = v }
        if let v = value("FEDBROKER_GRAPH_URL") { e.graphURL = v }
        e.applicationClientID = value("FEDBROKER_APP_CLIENT_ID")
        e.caBundlePath = value("FEDBROKER_CA_BUNDLE")
        if let v = value("FEDBROKER_VAULT_HOST_SUFFIXES") {
            e.vaultHostSuffixes = v.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        }
        return e
    }

    /// An HTTP client with pooled connections that trusts the system roots plus the CA bundle.
    /// The caller owns it and must `shutdown()` it.
    /// - Throws: `BrokerError` `.invalidArgument` when the CA bundle cannot be read: a
    ///   configuration error, found at startup rather than at the first TLS handshake.
    public func makeHTTPClient() throws -> HTTPClient {
        var tls = TLSConfiguration.makeClientConfiguration()
        if let caBundlePath {
            guard FileManager.default.isReadableFile(atPath: caBundlePath) else {
                throw BrokerError(.invalidArgument, "CA bundle \(caBundlePath) is not readable")
            }
            tls.additionalTrustRoots = [.file(caBundlePath)]
        }
        var configuration = HTTPClient.Configuration(tlsConfiguration: tls)
        configuration.connectionPool = .init(idleTimeout: .seconds(60))
        configuration.redirectConfiguration = .disallow
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }
}
