import AdminAPI
import AsyncHTTPClient
import AzureEmulator
import AzureIdentity
import BrokerApp
import BrokerClient
import BrokerWire
import BrokerServer
import BrokerStore
import FedBrokerCore
import FedBrokerTestSupport
import Foundation
import KeyVault
import Logging
import NIOCore
import Testing

/// `/metrics`, `/readyz` and the framed Health of a whole broker over real sockets: the emulator
/// over HTTPS, the framed listener over mTLS, the admin listener over plain HTTP on loopback.
@Suite struct OperabilityTests {
    struct World {
        let running: RunningEmulator
        let app: BrokerApp
        let adminURL: String
        let pki: LocalPKI
        let http: HTTPClient
        var scenario: DefaultScenario { running.scenario }

        func get(_ path: String) async throws -> (status: Int, body: String) {
            let response = try await http.execute(HTTPClientRequest(url: "\(adminURL)\(path)"), timeout: .seconds(60))
            var body = try await response.body.collect(upTo: 8 << 20)
            return (Int(response.status.code), body.readString(length: body.readableBytes) ?? "")
        }

        /// `/readyz` once it says ready (at most 60 s): a verdict reached while the world was
        /// still activating its slots is cached for a few seconds by design.
        func readyzOnceReady() async throws -> (status: Int, json: [String: Any]) {
            let until = Date().addingTimeInterval(60)
            var reply = try await readyz()
            while reply.status != 200, Date() < until {
                try await Task.sleep(for: .milliseconds(250))
                reply = try await readyz()
            }
            return reply
        }

        func readyz() async throws -> (status: Int, json: [String: Any]) {
            let (status, body) = try await get("/readyz")
            let json = try #require(try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any], "\(body)")
            return (status, json)
        }

        func scrape() async throws -> PrometheusText {
            let (status, body) = try await get("/metrics")
            #expect(status == 200)
            return try PrometheusText(parsing: body)
        }

        func client(_ name: String) throws -> FedBrokerClient {
            var configuration = FedBrokerClient.Configuration(
                host: "127.0.0.1", port: app.port, tls: try pki.clientTLS(commonName: name), serverHostname: "localhost")
            configuration.backoff = Backoff(initial: 0.05, maximum: 0.05, maxRetries: 0)
            return FedBrokerClient(configuration: configuration)
        }

        func counter(_ name: String) -> Int { running.emulator.state.counters.snapshot[name] ?? 0 }
    }

    static func deadline() -> Date { Date().addingTimeInterval(120) }

    /// A broker with an admin listener; with `populated`, the scenario's two slots active, one
    /// active tenant (`customer-1`, the scenario's first customer) and a caller `svc-a` for it.
    static func withWorld(
        populated: Bool = true, configure: (inout BrokerAppConfiguration, RunningEmulator) async throws -> Void = { _, _ in },
        _ body: (World) async throws -> Void
    ) async throws {
        let logger = TestLogging.logger(label: "operability-tests", uncapturedLevel: .error)
        try await RunningEmulator.with(logger: logger) { running in
            let scenario = running.scenario
            var service = BrokerService.Configuration(environment: running.environment)
            service.azureAttemptTimeout = 120
            // The parallel suite on 2 cores can take seconds to answer a read: the verdicts under
            // test are about what fails, not how fast (ReadinessTests cover the timeouts).
            service.readiness.storeTimeoutSeconds = 60
            service.readiness.assertionTimeoutSeconds = 60
            let pki = try LocalPKI()
            var configuration = BrokerAppConfiguration(
                store: .sqlite(path: running.directory.appendingPathComponent("broker.db").path), service: service)
            configuration.transport.tls = try pki.serverTLS()
            var admin = BrokerAppConfiguration.Admin(
                api: AdminAPIConfiguration(staffTenantID: scenario.isvTenantID, audiences: [scenario.adminAudience]))
            admin.port = 0  // plaintext on loopback
            configuration.admin = admin
            try await configure(&configuration, running)
            let app = try await BrokerApp.build(configuration, signals: [], logger: logger)
            let http = HTTPClient(eventLoopGroupProvider: .singleton)
            do {
                try await app.serving {
                    if populated {
                        try await running.activateSlots(in: app.store)
                        let customer = scenario.customers[0]
                        let registration = try TenantRegistration(
                            id: TenantID(rawValue: "customer-1")!, entraTenantID: EntraTenantID(validating: customer.tenantID),
                            displayName: "Customer 1", geo: "europe", key: KeyReference(vaultURL: customer.vaultURL, keyName: customer.keyName))
                        var tenant = try await app.store.registerTenant(registration, actor: "onboarding")
                        tenant = try await app.store.transitionTenant(tenant.id, expectedVersion: tenant.version, event: .validationSucceeded, actor: "onboarding")
                        tenant = try await app.store.transitionTenant(tenant.id, expectedVersion: tenant.version, event: .activate, actor: "onboarding")
                        _ = try await app.store.createCaller(
                            Caller(id: "svc-a", identity: LocalPKI.callerIdentity("svc-a"), grants: [CallerGrant(operations: Set(KeyOperation.allCases), tenants: .only([tenant.id]))]),
                            actor: "sre")
                    }
                    let port = try #require(await app.adminPort())
                    try await body(World(running: running, app: app, adminURL: "http://127.0.0.1:\(port)", pki: pki, http: http))
                }
            } catch {
                try? await http.shutdown()
                throw error
            }
            try await http.shutdown()
        }
    }

    @Test("After GenerateDataKey, two Unwraps and a refused call, /metrics has every family with plausible values and no identifying label")
    func metricsAfterTraffic() async throws {
        try await Self.withWorld { w in
            let client = try w.client("svc-a")
            let (plaintext, blob, _) = try await client.generateDataKey(tenant: "customer-1", deadline: Self.deadline())
            #expect(try await client.unwrap(blob, deadline: Self.deadline()) == plaintext)
            #expect(try await client.unwrap(blob, deadline: Self.deadline()) == plaintext)  // from the cache
            let refused = await #expect(throws: BrokerCallError.self) { _ = try await client.generateDataKey(tenant: "customer-2", deadline: Self.deadline()) }
            #expect(refused?.wireStatus?.code == .permissionDenied)
            #expect(refused?.wireStatus?.reason == .notAuthorized)
            await client.close()

            // Gauges are process-wide and other brokers of this test process set them too: refresh
            // and scrape until this broker's values show (they do at once unless another broker
            // refreshed in between).
            var metrics = try await w.scrape()
            let until = ContinuousClock.now + .seconds(60)
            repeat {
                await w.app.refreshMetrics()
                metrics = try await w.scrape()
            } while ContinuousClock.now < until
                && !(metrics.value("fedbroker_slots", ["state": "active"]) ?? 0 >= 2
                    && metrics.value("fedbroker_tenants", ["state": "active"]) ?? 0 >= 1
                    && metrics.value("fedbroker_circuits", ["state": "closed"]) ?? 0 >= 1
                    && metrics.value("fedbroker_ready") == 1)

            // Requests by method, status and reason, and their latency.
            #expect(metrics.types["fedbroker_requests_total"] == "counter")
            #expect(metrics.value("fedbroker_requests_total", ["method": "GenerateDataKey", "status": "OK", "reason": "REASON_UNSPECIFIED"]) ?? 0 >= 1)
            #expect(metrics.value("fedbroker_requests_total", ["method": "Unwrap", "status": "OK", "reason": "REASON_UNSPECIFIED"]) ?? 0 >= 2)
            #expect(metrics.value("fedbroker_requests_total", ["method": "GenerateDataKey", "status": "PERMISSION_DENIED", "reason": "NOT_AUTHORIZED"]) ?? 0 >= 1)
            #expect(metrics.types["fedbroker_request_duration_seconds"] == "histogram")
            #expect(metrics.value("fedbroker_request_duration_seconds_count", ["method": "Unwrap"]) ?? 0 >= 2)
            #expect(metrics.value("fedbroker_request_duration_seconds_bucket", ["method": "Unwrap", "le": "+Inf"]) ?? 0 >= 2)
            #expect(metrics.value("fedbroker_request_duration_seconds_sum", ["method": "Unwrap"]) ?? -1 > 0)

            // The data-key cache: the second Unwrap was a hit, the first a miss.
            #expect(metrics.value("fedbroker_cache_hits_total") ?? 0 >= 1)
            #expect(metrics.value("fedbroker_cache_misses_total") ?? 0 >= 1)
            #expect(metrics.value("fedbroker_cache_evictions_total") != nil)
            #expect(metrics.value("fedbroker_cache_purges_total") != nil)
            #expect(metrics.types["fedbroker_cache_entries"] == "gauge")
            #expect(metrics.value("fedbroker_cache_entries") ?? -1 >= 0)

            // The vault: one wrap and one unwrap answered, timed.
            #expect(metrics.value("fedbroker_vault_requests_total", ["operation": "wrapkey", "outcome": "success"]) ?? 0 >= 1)
            #expect(metrics.value("fedbroker_vault_requests_total", ["operation": "unwrapkey", "outcome": "success"]) ?? 0 >= 1)
            #expect(metrics.value("fedbroker_vault_request_duration_seconds_count", ["operation": "unwrapkey"]) ?? 0 >= 1)

            // The identity chain.
            #expect(metrics.value("fedbroker_token_exchanges_total", ["outcome": "success"]) ?? 0 >= 1)
            #expect(metrics.value("fedbroker_imds_requests_total", ["outcome": "success"]) ?? 0 >= 1)

            // Circuits, audit, slots, tenants, jobs, readiness.
            #expect(metrics.value("fedbroker_circuits", ["state": "closed"]) ?? 0 >= 1)
            #expect(metrics.value("fedbroker_circuits", ["state": "open"]) != nil)
            #expect(metrics.value("fedbroker_circuits", ["state": "half_open"]) != nil)
            #expect(metrics.value("fedbroker_audit_queue_depth") ?? -1 >= 0)
            #expect(metrics.types["fedbroker_audit_commit_duration_seconds"] == "histogram")
            #expect(metrics.value("fedbroker_audit_commit_duration_seconds_count") ?? 0 >= 1)
            #expect(metrics.value("fedbroker_slots", ["state": "active"]) ?? 0 >= 2)
            #expect(metrics.value("fedbroker_slots", ["state": "retired"]) != nil)
            #expect(metrics.value("fedbroker_tenants", ["state": "active"]) ?? 0 >= 1)
            #expect(metrics.value("fedbroker_tenants", ["state": "offboarded"]) != nil)
            #expect([0, 1].contains(metrics.value("fedbroker_slot_jobs_running") ?? -1))
            for kind in SlotJobKind.allCases {
                for measure in ["total", "moved", "failed", "left"] {
                    #expect(metrics.value("fedbroker_slot_job_progress", ["kind": kind.rawValue, "measure": measure]) ?? -1 >= 0, "\(kind) \(measure)")
                }
            }
            #expect(metrics.value("fedbroker_ready") == 1)

            // No tenant, caller, vault, Entra tenant or key in any label.
            let customer = w.scenario.customers[0]
            let forbidden = ["customer-1", "svc-a", customer.tenantID, customer.vaultName, customer.keyName, w.scenario.isvTenantID, "localhost"]
            for sample in metrics.samples where sample.name.hasPrefix("fedbroker_") {
                for value in sample.labels.values {
                    #expect(!forbidden.contains { value.contains($0) }, "\(sample.name) has the label value \(value)")
                }
            }
        }
    }

    @Test("/readyz is 200 with its checks listed when healthy, 503 naming the store when the store's read fails; the framed Health follows")
    func readinessFollowsTheStore() async throws {
        try await Self.withWorld { w in
            let healthy = try await w.readyzOnceReady()
            #expect(healthy.status == 200, "\(healthy.json)")
            #expect(healthy.json["status"] as? String == "ok")
            let checks = try #require(healthy.json["checks"] as? [[String: Any]])
            #expect(checks.map { $0["name"] as? String } == ["store", "audit", "identity"])
            #expect(checks.allSatisfy { $0["ok"] as? Bool == true })
            let client = try w.client("anyone")
            #expect(try await client.health(deadline: Self.deadline()) == "SERVING")
            #expect(try await w.get("/livez").status == 200)

            // The readiness read fails (its table is gone): not ready, and the store is named.
            try await w.app.store.executeForTesting("ALTER TABLE change_feed RENAME TO change_feed_away")
            _ = await w.app.service.readiness.report(maximumAge: 0)
            let broken = try await w.readyz()
            #expect(broken.status == 503)
            #expect(broken.json["status"] as? String == "unavailable")
            let failing = (broken.json["checks"] as? [[String: Any]] ?? []).filter { $0["ok"] as? Bool == false }.compactMap { $0["name"] as? String }
            #expect(failing == ["store"])
            #expect((broken.json["detail"] as? String)?.contains("store") == true)
            #expect(try await client.health(deadline: Self.deadline()) == "NOT_SERVING")

            try await w.app.store.executeForTesting("ALTER TABLE change_feed_away RENAME TO change_feed")
            _ = await w.app.service.readiness.report(maximumAge: 0)
            #expect(try await w.readyz().status == 200)
            #expect(try await client.health(deadline: Self.deadline()) == "SERVING")
            await client.close()
        }
    }

    @Test("A broker with no active FIC slot is not ready: /readyz 503 naming identity, the framed Health NOT_SERVING")
    func noActiveSlotIsNotReady() async throws {
        try await Self.withWorld(populated: false) { w in
            let reply = try await w.readyz()
            #expect(reply.status == 503)
            let checks = try #require(reply.json["checks"] as? [[String: Any]])
            let identity = try #require(checks.first { $0["name"] as? String == "identity" })
            #expect(identity["ok"] as? Bool == false)
            #expect((identity["detail"] as? String)?.contains("no active FIC slot") == true)
            #expect(checks.filter { $0["ok"] as? Bool == false }.count == 1)
            let client = try w.client("anyone")
            #expect(try await client.health(deadline: Self.deadline()) == "NOT_SERVING")
            await client.close()
            #expect(w.counter("imds.token") == 0)  // nothing to ask IMDS for
        }
    }

    @Test("The deep canary round-trips on the ISV's own key, fails readiness once the ISV's role is removed, and never touches a customer's vault")
    func deepCanary() async throws {
        let canaryVault = "isv-canary-kv"
        try await Self.withWorld(configure: { configuration, running in
            let state = running.emulator.state
            let scenario = running.scenario
            // The ISV application in its home tenant, a vault of the ISV's and an RSA-3072 key it may use.
            let principal = try state.createServicePrincipal(tenantID: scenario.isvTenantID, appID: scenario.appClientID)
            let url = try await state.createVault(tenantID: scenario.isvTenantID, name: canaryVault)
            try state.createKey(vault: canaryVault, name: "canary")
            try state.assignRole(vault: canaryVault, principalID: principal.objectId, keyName: "canary")
            var canary = Canary.Configuration(tenantID: scenario.isvTenantID, vaultURL: url, keyName: "canary")
            canary.intervalSeconds = 0.2
            canary.timeoutSeconds = 60
            configuration.service.readiness.canary = canary
            configuration.service.readiness.canaryRequired = true
        }) { w in
            let canary = try #require(w.app.service.readiness.canary)
            // The canary service may have run before the slots existed: run until a run succeeds.
            let until = ContinuousClock.now + .seconds(60)
            var result = await canary.runIfDue()
            while result?.ok != true, ContinuousClock.now < until {
                try await Task.sleep(for: .milliseconds(50))  // polling for the next due run
                result = await canary.runIfDue()
            }
            #expect(result?.ok == true, "\(result?.detail ?? "no result")")
            #expect(w.counter("keyvault.unwrapkey") >= 1)
            _ = await w.app.service.readiness.report(maximumAge: 0)
            let ready = try await w.readyz()
            #expect(ready.status == 200)
            let canaryCheck = (ready.json["checks"] as? [[String: Any]])?.first { $0["name"] as? String == "canary" }
            #expect(canaryCheck?["ok"] as? Bool == true)
            #expect(canaryCheck?["required"] as? Bool == true)

            // The ISV's role on its own key goes: the next run fails, and with it readiness.
            let assignment = try #require(w.running.emulator.state.read { $0.vaults[canaryVault]?.roleAssignments.first })
            try w.running.emulator.state.removeRoleAssignment(vault: canaryVault, id: assignment.id)
            let failUntil = ContinuousClock.now + .seconds(60)
            result = await canary.runIfDue()
            while result?.ok != false, ContinuousClock.now < failUntil {
                try await Task.sleep(for: .milliseconds(50))  // polling for the next due run
                result = await canary.runIfDue()
            }
            #expect(result?.ok == false)
            #expect(result?.detail.contains("ForbiddenByRbac") == true, "\(result?.detail ?? "")")
            _ = await w.app.service.readiness.report(maximumAge: 0)
            let notReady = try await w.readyz()
            #expect(notReady.status == 503)
            let failing = (notReady.json["checks"] as? [[String: Any]] ?? []).filter { $0["ok"] as? Bool == false }.compactMap { $0["name"] as? String }
            #expect(failing == ["canary"])
            let client = try w.client("anyone")
            #expect(try await client.health(deadline: Self.deadline()) == "NOT_SERVING")
            await client.close()

            // Pointed at a customer's vault, a canary refuses before it sends anything anywhere.
            let customer = w.scenario.customers[0]
            let http = try w.running.environment.makeHTTPClient()
            // Wraps and unwraps: the service's own key-state reads (GET) may run in the background meanwhile.
            let vaultCalls = w.counter("keyvault.wrapkey") + w.counter("keyvault.unwrapkey")
            let misdirected = Canary(
                configuration: .init(tenantID: customer.tenantID, vaultURL: customer.vaultURL, keyName: customer.keyName),
                store: w.app.store, sources: w.app.service.assertionSources,
                probe: ChainProbe(environment: w.running.environment, httpClient: http), logger: Logger(label: "canary"))
            let refused = await misdirected.runIfDue()
            try await http.shutdown()
            #expect(refused?.ok == false)
            #expect(refused?.detail.contains("customer") == true)
            #expect(w.counter("keyvault.wrapkey") + w.counter("keyvault.unwrapkey") == vaultCalls)
        }
    }
}
