import AzureEmulator
import AzureIdentity
import FedBrokerCore
import Foundation
@testable import KeyVault
import Testing

@Suite struct ChainProbeTests {
    func probe(_ f: ClientFixture) -> ChainProbe { ChainProbe(environment: f.environment, httpClient: f.http, clock: f.clock) }

    @Test func succeedsForBothCustomers() async throws {
        try await withClients { f in
            for index in 0..<2 {
                let report = await probe(f).run(tenantID: f.scenario.customers[index].tenantID, key: f.key(index), source: f.source(index))
                #expect(report.succeeded, "\(report.steps)")
                #expect(report.steps.map(\.name) == [
                    "vault URL", "assertion", "vault challenge", "token exchange", "get key", "key type", "key size", "key operations", "key enabled",
                    "key validity", "purge protection", "round trip",
                ])
                #expect(report.bundle?.tags["purpose"] == "fedbroker-cmk")
                #expect(report.servicePrincipalObjectID == f.scenario.customers[index].servicePrincipalObjectID)
                let json = try JSONSerialization.jsonObject(with: try report.jsonData()) as? [String: Any]
                #expect(json?["ok"] as? Bool == true)
            }
        }
    }

    @Test func classifiesTheUngrantedKey() async throws {
        try await withClients { f in
            let report = await probe(f).run(tenantID: f.scenario.customers[0].tenantID, key: f.key(0, name: f.scenario.ungrantedKeyName), source: f.source(0))
            #expect(!report.succeeded)
            let failed = try #require(report.steps.last)
            #expect(failed.name == "get key")
            #expect(failed.code == "ForbiddenByRbac")
            #expect(failed.responsible == "customer")
            #expect(failed.remedy?.contains(f.scenario.customers[0].servicePrincipalObjectID) == true)
            #expect(failed.remedy?.contains("e147488a-f6f5-4113-8e2d-b22465e65bf6") == true)
        }
    }

    @Test func unconsentedTenantGetsTheAdminConsentURL() async throws {
        try await withClients { f in
            let tenant = try f.state.createTenant(displayName: "New Customer")
            let url = try await f.state.createVault(tenantID: tenant.id, name: "new-kv")
            try f.state.createKey(vault: "new-kv", name: "cmk")
            let report = await probe(f).run(tenantID: tenant.id, key: VaultKeyID(vaultURL: url, name: "cmk"), source: f.source(0))
            let failed = try #require(report.steps.last)
            #expect(failed.name == "token exchange")
            #expect(failed.code == "AADSTS700016")
            #expect(failed.remedy?.contains("\(f.environment.authorityURL)/\(tenant.id)/adminconsent?client_id=\(f.scenario.appClientID)") == true)
        }
    }

    @Test func keyChecksFailWithReasons() async throws {
        try await withClients { f in
            let tenant = f.scenario.customers[0]
            let url = try await f.state.createVault(tenantID: tenant.tenantID, name: "weak-kv", purgeProtection: false)
            var options = EmulatorState.KeyOptions()
            options.size = 2048
            try f.state.createKey(vault: "weak-kv", name: "small", options: options)
            try f.state.assignRole(vault: "weak-kv", principalID: tenant.servicePrincipalObjectID)
            let report = await probe(f).run(tenantID: tenant.tenantID, key: VaultKeyID(vaultURL: url, name: "small"), source: f.source(0))
            #expect(!report.succeeded)
            let failures = report.steps.filter { !$0.ok }.compactMap(\.code)
            #expect(failures == ["KEY_TOO_SMALL", "PURGE_PROTECTION_OFF"])
            #expect(report.steps.last?.name == "round trip")
            #expect(report.steps.last?.ok == true)  // the round trip itself works; the key is still unfit
        }
    }

    @Test func aVaultURLOffTheAllowedDomainsNeverGetsAToken() async throws {
        try await withClients { f in
            let report = await probe(f).run(
                tenantID: f.scenario.customers[0].tenantID, key: VaultKeyID(vaultURL: "https://attacker.example", name: "cmk"), source: f.source(0))
            #expect(report.steps.map(\.name) == ["vault URL"])
            #expect(report.steps.last?.code == "invalidVaultURL")
            #expect(f.counter("imds.token") == 0)
        }
    }

    @Test func vaultOfAnotherTenantIsRefused() async throws {
        try await withClients { f in
            let report = await probe(f).run(tenantID: f.scenario.customers[0].tenantID, key: f.key(1), source: f.source(0))
            #expect(report.steps.last?.code == "VAULT_IN_OTHER_TENANT")
            #expect(report.steps.last?.responsible == "onboarding")
            #expect(f.counter("entra.token") == 0)  // refused before asking Entra for anything
        }
    }
}
