import AsyncHTTPClient
import AzureEmulator
import AzureHTTP
import AzureIdentity
import FedBrokerCore
import Foundation
import KeyVault
import Logging
import NIOCore
import NIOSSL
import Testing
import FedBrokerTestSupport

/// The production clients wired against a running emulator, sharing one manual clock: backoff
/// sleeps move the emulator's time too, so propagation delays and Retry-After play out at once.
struct ClientFixture {
    let emulator: AzureEmulator
    let clock: ManualWallClock
    let http: HTTPClient
    let environment: AzureEnvironment
    let exchange: ClientAssertionExchange
    let provider: CrossTenantTokenProvider
    let vault: KeyVaultClient
    var scenario: DefaultScenario { emulator.defaultScenario! }
    var state: EmulatorState { emulator.state }

    func source(_ index: Int) -> IMDSAssertionSource {
        IMDSAssertionSource(
            clientID: scenario.managedIdentities[index].clientId, endpoint: environment.imdsURL, httpClient: http, clock: clock,
            attemptTimeout: Self.attemptTimeout)
    }

    func source(clientID: String, propagatingUntil: Date? = nil) -> IMDSAssertionSource {
        IMDSAssertionSource(
            clientID: clientID, endpoint: environment.imdsURL, httpClient: http, clock: clock, attemptTimeout: Self.attemptTimeout,
            credentialPropagatingUntil: propagatingUntil)
    }

    /// Request counters as the control API reports them, over HTTP.
    func controlCounters() async throws -> [String: Int] {
        let response = try await http.execute(HTTPClientRequest(url: "\(emulator.state.currentEndpoints.control)/control/counters"), timeout: .seconds(10))
        let body = try await response.body.collect(upTo: 1 << 20)
        return (try JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [String: Int]) ?? [:]
    }

    /// Per-attempt timeouts guard production against hung servers; on a loaded 2-core test
    /// machine a real-time 5 s can pass while the emulator is busy, so tests allow more.
    static let attemptTimeout: Double = 120

    func deadline(_ seconds: Double = 60) -> Date { clock.now.addingTimeInterval(seconds) }

    /// The token provider Key Vault calls with, for customer `index` through slot `slot`.
    func tokens(customer index: Int, slot: Int? = nil) -> KeyVaultClient.TokenProvider {
        provider.vaultTokenProvider(tenantID: scenario.customers[index].tenantID, source: source(slot ?? index))
    }

    func key(_ index: Int, name: String? = nil, version: String? = nil) -> VaultKeyID {
        VaultKeyID(vaultURL: scenario.customers[index].vaultURL, name: name ?? scenario.customers[index].keyName, version: version)
    }

    func counter(_ name: String) -> Int { state.counters.snapshot[name] ?? 0 }
}

func withClients(
    configure: @escaping @Sendable (inout AzureEmulator.Configuration) -> Void = { _ in },
    vaultConfiguration: KeyVaultClient.Configuration? = nil,
    _ body: (ClientFixture) async throws -> Void
) async throws {
    RSAKeyMaterial.reuse(true)
    let logger = TestLogging.logger(label: "client-test")
    var configuration = AzureEmulator.Configuration()
    configuration.seedDefaultScenario = true
    configuration.secretObserver = TestLogging.secretObserver
    configure(&configuration)
    let clock = ManualWallClock(Date())
    try await AzureEmulator.withRunning(configuration: configuration, clock: clock, logger: logger) { emulator, endpoints in
        let scenario = try #require(emulator.defaultScenario)
        let caPath = FileManager.default.temporaryDirectory.appendingPathComponent("emu-ca-\(UUID().uuidString).pem").path
        try emulator.pki.caCertificatePEM.write(toFile: caPath, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: caPath) }
        let environment = AzureEnvironment(
            imdsURL: endpoints.imds, authorityURL: endpoints.authority, graphURL: endpoints.graph,
            applicationClientID: scenario.appClientID, caBundlePath: caPath, vaultHostSuffixes: ["localhost"])
        let http = try environment.makeHTTPClient()
        let exchange = ClientAssertionExchange(
            authority: environment.authorityURL, applicationClientID: scenario.appClientID, httpClient: http, clock: clock,
            attemptTimeout: ClientFixture.attemptTimeout)
        let fixture = ClientFixture(
            emulator: emulator, clock: clock, http: http, environment: environment, exchange: exchange,
            provider: CrossTenantTokenProvider(exchange: exchange, clock: clock, jitter: { 0 }),
            vault: KeyVaultClient(httpClient: http, clock: clock, configuration: {
                var c = vaultConfiguration ?? .init(environment: environment)
                c.attemptTimeout = ClientFixture.attemptTimeout
                return c
            }()))
        do {
            try await body(fixture)
        } catch {
            try? await http.shutdown()
            throw error
        }
        try await http.shutdown()
    }
}
