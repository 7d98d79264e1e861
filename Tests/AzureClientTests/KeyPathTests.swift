import AzureEmulator
import FedBrokerCore
import Foundation
import KeyVault
import Synchronization
import Testing

/// A key name or version from outside (a tampered blob) never shapes the vault URL: what Key
/// Vault does not issue is refused before any token is asked for or any byte is sent.
@Suite struct KeyPathTests {
    @Test(arguments: [
        "v1/decrypt?api-version=7.4&x=", "../../keys/other", "78deebed173b48e48f55abf87ed4cf7", "78deebed173b48e48f55abf87ed4cf71/",
        "78DEEBED173B48E48F55ABF87ED4CF7%", "７８deebed173b48e48f55abf87ed4cf71",
    ])
    func aVersionKeyVaultDoesNotIssueIsRefusedBeforeAnythingIsSent(version: String) async throws {
        try await withClients { f in
            let vaultName = try #require(f.scenario.customers.first?.vaultName).lowercased()
            let before = f.state.counters.snapshot.filter { $0.key.hasPrefix("keyvault.\(vaultName).") }.values.reduce(0, +)
            let tokenAsked = Mutex(false)
            do {
                _ = try await f.vault.unwrapKey(
                    f.key(0, version: version), wrapped: Array(repeating: 1, count: 384),
                    token: { _, _ in
                        tokenAsked.withLock { $0 = true }
                        return "unused"
                    }, deadline: f.deadline())
                Issue.record("an unwrap with version \(version) was sent")
            } catch let error as KeyVaultError {
                #expect(error.kind == .badParameter)
                #expect(error.serviceMessage.hasPrefix("refused before sending"))
            }
            #expect(!tokenAsked.withLock { $0 }, "no token was fetched for it")
            let after = f.state.counters.snapshot.filter { $0.key.hasPrefix("keyvault.\(vaultName).") }.values.reduce(0, +)
            #expect(after == before, "the vault saw no request")
        }
    }

    @Test func aKeyNameWithAPathInItIsRefusedToo() async throws {
        try await withClients { f in
            do {
                _ = try await f.vault.getKey(f.key(0, name: "cmk/../other"), token: { _, _ in "unused" }, deadline: f.deadline())
                Issue.record("a key name with a path in it was sent")
            } catch let error as KeyVaultError {
                #expect(error.kind == .badParameter)
            }
        }
    }
}
