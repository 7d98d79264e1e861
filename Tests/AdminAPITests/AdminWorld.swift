import AdminAPI
import AdminAPIModel
import AdminClient
import AsyncHTTPClient
import AzureEmulator
import AzureIdentity
import BrokerApp
import BrokerClient
import BrokerServer
import BrokerStore
import FedBrokerCore
import Foundation
import HTTPTypes
import Logging
import NIOCore
import NIOHTTP1
import NIOSSL
import OpenAPIAsyncHTTPClient
import OpenAPIRuntime
import Testing
import FedBrokerTestSupport

/// The emulator and a whole broker built by `BrokerApp` (store, service, framed mTLS listener,
/// admin HTTPS listener), over real sockets. Two active FIC slots; no tenants, no callers: the
/// tests onboard them through the admin API.
struct AdminWorld {
    let emulator: AzureEmulator
    let endpoints: EmulatorState.Endpoints
    let app: BrokerApp
    let adminURL: String
    /// The admin API's Unix socket (every role to whoever can open it).
    let socketPath: String
    let pki: LocalPKI
    /// Trusts the emulator's CA and the broker's test CA.
    let http: HTTPClient
    var scenario: DefaultScenario { emulator.defaultScenario! }

    static func with(
        configure: (inout BrokerAppConfiguration, DefaultScenario) -> Void = { _, _ in }, _ body: (AdminWorld) async throws -> Void
    ) async throws {
        let logger = TestLogging.logger(label: "admin-tests")
        try await RunningEmulator.with(logger: logger) { running in
            let (emulator, endpoints, scenario, dir) = (running.emulator, running.endpoints, running.scenario, running.directory)
            let pki = try LocalPKI()
            var service = BrokerService.Configuration(environment: running.environment)
            service.azureAttemptTimeout = 120
            service.recordMaximumAge = 0  // every request reads the store: state changes show at once
            service.rolePropagationSeconds = 0  // a role removed right after activation counts at once
            service.cache = .init(maximumEntries: 16, maximumAge: 0.001)  // nothing is served from memory: revocation shows at once
            var configuration = BrokerAppConfiguration(store: .sqlite(path: dir.appendingPathComponent("broker.db").path), service: service)
            configuration.transport.tls = try pki.serverTLS()
            var api = AdminAPIConfiguration(staffTenantID: scenario.isvTenantID, audiences: [scenario.adminAudience, scenario.adminAppID])
            api.applicationDisplayName = "fabrikam-cmk"
            var admin = BrokerAppConfiguration.Admin(api: api)
            admin.port = 0
            let (certificate, key) = try pki.leaf("localhost", server: true)
            admin.tls = TLSConfiguration.makeServerConfiguration(certificateChain: [.certificate(certificate)], privateKey: .privateKey(key))
            admin.unixSocketPath = dir.appendingPathComponent("admin.sock").path
            configuration.admin = admin
            configure(&configuration, scenario)

            let app = try await BrokerApp.build(configuration, signals: [], logger: logger)
            try await running.activateSlots(in: app.store)
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.trustRoots = .certificates([try pki.caCertificate, try NIOSSLCertificate(bytes: Array(emulator.pki.caCertificatePEM.utf8), format: .pem)])
            let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(tlsConfiguration: tls))
            // Whatever the body does, the broker shuts down and closes its store before we go on.
            do {
                try await app.serving {
                    let port = try #require(await app.adminPort())
                    try await body(AdminWorld(
                        emulator: emulator, endpoints: endpoints, app: app, adminURL: "https://localhost:\(port)",
                        socketPath: dir.appendingPathComponent("admin.sock").path, pki: pki, http: http))
                }
            } catch {
                try? await http.shutdown()
                throw error
            }
            try await http.shutdown()
        }
    }

    /// A staff member's access token, as `az account get-access-token` would hand it over.
    func token(_ user: String, resource: String? = nil, issuedAtOffsetSeconds: Int = 0) async throws -> String {
        let oid = try #require(scenario.staffUserObjectIDs[user])
        let reply = try await send(
            .POST, "\(endpoints.control)/control/users/\(oid)/token",
            json: ["resource": resource ?? scenario.adminAudience, "issuedAtOffsetSeconds": issuedAtOffsetSeconds])
        #expect(reply.status == 200, "\(reply.body)")
        return try #require(reply.object["access_token"] as? String)
    }

    /// The generated admin client, as `user` (nil: no token at all).
    func client(_ user: String?) async throws -> Client {
        let token: String? = if let user { try await self.token(user) } else { nil }
        return client(token: token)
    }

    func client(token: String?) -> Client {
        Client(
            serverURL: URL(string: adminURL)!, transport: AsyncHTTPClientTransport(configuration: .init(client: http)),
            middlewares: token.map { [BearerTokenMiddleware(token: $0)] } ?? [])
    }

    func broker(_ commonName: String) throws -> FedBrokerClient {
        var configuration = FedBrokerClient.Configuration(
            host: "127.0.0.1", port: app.port, tls: try pki.clientTLS(commonName: commonName), serverHostname: "localhost")
        configuration.backoff = Backoff(initial: 0.05, maximum: 0.05, maxRetries: 0)
        return FedBrokerClient(configuration: configuration)
    }

    struct Reply {
        var status: Int
        var body: String
        var headers: HTTPFields
        var object: [String: Any] { (try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]) ?? [:] }
    }

    /// A raw request, for what the generated client would never send (bad JSON, unknown fields).
    func send(_ method: HTTPMethod, _ url: String, json: [String: Any]? = nil, raw: String? = nil, headers: [(String, String)] = []) async throws -> Reply {
        var request = HTTPClientRequest(url: url)
        request.method = method
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let json {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: json)))
        } else if let raw {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: raw))
        }
        let response = try await http.execute(request, timeout: .seconds(120))
        var buffer = try await response.body.collect(upTo: 4 << 20)
        var fields = HTTPFields()
        for header in response.headers { if let name = HTTPField.Name(header.name) { fields.append(.init(name: name, value: header.value)) } }
        return Reply(status: Int(response.status.code), body: buffer.readString(length: buffer.readableBytes) ?? "", headers: fields)
    }

    /// A customer tenant the broker's application is NOT yet trusted in: a vault with purge
    /// protection and an RSA-3072 key with wrapKey/unwrapKey, no consent, no role, no tag.
    func newCustomer(_ name: String) async throws -> (tenantID: String, vaultName: String, vaultURL: String, keyName: String) {
        let tenant = try emulator.state.createTenant(displayName: name)
        let vaultName = "\(name.lowercased())-kv"
        let url = try await emulator.state.createVault(tenantID: tenant.id, name: vaultName, purgeProtection: true)
        _ = try emulator.state.createKey(vault: vaultName, name: "cmk")
        return (tenant.id, vaultName, url, "cmk")
    }
}
