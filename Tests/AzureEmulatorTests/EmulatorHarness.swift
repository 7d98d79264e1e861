import AsyncHTTPClient
@testable import AzureEmulator
import FedBrokerCore
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOSSL
import ServiceLifecycle
import Testing
import FedBrokerTestSupport

/// A running emulator on loopback with a manual clock, and an HTTP client that trusts its CA.
/// Every integration test talks to it over real sockets (TLS where Azure uses TLS).
struct Harness {
    let emulator: AzureEmulator
    let endpoints: EmulatorState.Endpoints
    let http: HTTPClient
    let clock: ManualWallClock
    var state: EmulatorState { emulator.state }
    var scenario: DefaultScenario { emulator.defaultScenario! }

    struct Reply {
        var status: Int
        var headers: HTTPHeaders
        var body: String
        var json: [String: Any] { (try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]) ?? [:] }
        /// `error.code` (Key Vault, Graph) or `error` (Entra, IMDS).
        var errorCode: String? {
            if let e = json["error"] as? [String: Any] { return e["code"] as? String }
            return json["error"] as? String
        }
        var innerError: String? { ((json["error"] as? [String: Any])?["innererror"] as? [String: Any])?["code"] as? String }
        var aadsts: Int? { (json["error_codes"] as? [Int])?.first }
    }

    func send(_ method: HTTPMethod, _ url: String, headers: [(String, String)] = [], body: String? = nil) async throws -> Reply {
        var request = HTTPClientRequest(url: url)
        request.method = method
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let body { request.body = .bytes(ByteBuffer(string: body)) }
        let response = try await http.execute(request, timeout: .seconds(30))
        var buffer = try await response.body.collect(upTo: 1 << 20)
        return Reply(status: Int(response.status.code), headers: response.headers, body: buffer.readString(length: buffer.readableBytes) ?? "")
    }

    func json(_ method: HTTPMethod, _ url: String, _ body: String, headers: [(String, String)] = []) async throws -> Reply {
        try await send(method, url, headers: [("Content-Type", "application/json")] + headers, body: body)
    }

    // MARK: The chain, step by step

    func imds(_ query: String, metadata: Bool = true) async throws -> Reply {
        try await send(.GET, "\(endpoints.imds)/metadata/identity/oauth2/token?\(query)", headers: metadata ? [("Metadata", "true")] : [])
    }

    /// A managed-identity token for api://AzureADTokenExchange.
    func assertion(for clientID: String) async throws -> String {
        let reply = try await imds("api-version=2018-02-01&resource=api://AzureADTokenExchange&client_id=\(clientID)")
        #expect(reply.status == 200, "\(reply.body)")
        return try #require(reply.json["access_token"] as? String)
    }

    func exchange(
        tenant: String, assertion: String, clientID: String? = nil, scope: String = "https://vault.azure.net/.default",
        extra: String = ""
    ) async throws -> Reply {
        let form = [
            "client_id=\(clientID ?? scenario.appClientID)", "scope=\(Self.formEncode(scope))", "grant_type=client_credentials",
            "client_assertion_type=\(Self.formEncode(EntraService.jwtBearer))", "client_assertion=\(assertion)",
        ].joined(separator: "&") + extra
        return try await send(.POST, "\(endpoints.authority)/\(tenant)/oauth2/v2.0/token",
                              headers: [("Content-Type", "application/x-www-form-urlencoded")], body: form)
    }

    /// A vault access token for customer `index` (0 or 1) through managed identity `index`.
    func vaultToken(customer index: Int, identity: Int? = nil) async throws -> String {
        let mi = scenario.managedIdentities[identity ?? index]
        let reply = try await exchange(tenant: scenario.customers[index].tenantID, assertion: try await assertion(for: mi.clientId))
        #expect(reply.status == 200, "\(reply.body)")
        return try #require(reply.json["access_token"] as? String)
    }

    func keyVault(
        _ method: HTTPMethod, vaultURL: String, path: String, token: String?, body: String? = nil,
        apiVersion: String? = "7.4", clientRequestID: String? = nil
    ) async throws -> Reply {
        var headers: [(String, String)] = []
        if let token { headers.append(("Authorization", "Bearer \(token)")) }
        if body != nil { headers.append(("Content-Type", "application/json")) }
        if let clientRequestID { headers.append(("x-ms-client-request-id", clientRequestID)) }
        let query = apiVersion.map { "?api-version=\($0)" } ?? ""
        return try await send(method, "\(vaultURL)\(path)\(query)", headers: headers, body: body)
    }

    func wrap(_ vaultURL: String, key: String, version: String = "", token: String, plaintext: [UInt8]) async throws -> Reply {
        try await keyVault(.POST, vaultURL: vaultURL, path: "/keys/\(key)/\(version)/wrapkey", token: token,
                           body: #"{"alg":"RSA-OAEP-256","value":"\#(Base64URL.encode(plaintext))"}"#)
    }

    func unwrap(_ vaultURL: String, key: String, version: String, token: String, wrapped: String) async throws -> Reply {
        try await keyVault(.POST, vaultURL: vaultURL, path: "/keys/\(key)/\(version)/unwrapkey", token: token,
                           body: #"{"alg":"RSA-OAEP-256","value":"\#(wrapped)"}"#)
    }

    static func formEncode(_ s: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return s.addingPercentEncoding(withAllowedCharacters: allowed) ?? s
    }
}

/// Starts an emulator, runs `body` against it, and shuts everything down, also on failure.
func withEmulator(
    seed: Bool = true, stateDirectory: URL? = nil, clock: ManualWallClock = ManualWallClock(Date()),
    configure: (inout AzureEmulator.Configuration) -> Void = { _ in },
    _ body: (Harness) async throws -> Void
) async throws {
    RSAKeyMaterial.reuse(true)
    var logger = Logger(label: "emulator-test")
    logger.logLevel = .warning
    var configuration = AzureEmulator.Configuration()
    configuration.seedDefaultScenario = seed
    configuration.stateDirectory = stateDirectory
    configure(&configuration)
    try await AzureEmulator.withRunning(configuration: configuration, clock: clock, logger: logger) { emulator, endpoints in
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(emulator.pki.caCertificatePEM.utf8)))
        // Redirects are not followed: tests assert on the 302 itself (admin consent), as curl does.
        let http = HTTPClient(
            eventLoopGroupProvider: .singleton, configuration: .init(tlsConfiguration: tls, redirectConfiguration: .disallow))
        do {
            try await body(Harness(emulator: emulator, endpoints: endpoints, http: http, clock: clock))
        } catch {
            try? await http.shutdown()
            throw error
        }
        try await http.shutdown()
    }
}
