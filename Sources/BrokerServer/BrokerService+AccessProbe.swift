import AzureHTTP
import AzureIdentity
import BrokerStore
import Crypto
import FedBrokerCore
import Foundation
import KeyVault

/// What one access probe of a tenant found.
public enum AccessProbeOutcome: Hashable, Sendable {
    /// A fresh token through the tenant's slot, and a wrap and unwrap round trip through its key.
    case works
    /// The customer's side still refuses (a stable code: `forbiddenByRbac`, `keyDisabled`, `AADSTS700016`, …).
    case refused(code: String)
    /// Nothing was proven either way (our slot is not serving, the vault is throttling or down,
    /// the probe ran out of time); the tenant stays as it is until the next probe.
    case inconclusive(code: String)
}

extension BrokerService {
    /// Proves that the broker can serve `tenant` again, the same way serving does: a token for the
    /// tenant through its own slot, then wrap and unwrap of 32 random bytes with the tenant's key,
    /// through the same vault client (so the per-vault budget and circuit breaker count it).
    ///
    /// Cached tokens of the tenant are dropped first: a token obtained before the loss proves
    /// nothing about the consent or Conditional Access of now. The random bytes are not a data key
    /// and are never cached or logged.
    public func probeAccess(_ tenant: Tenant, timeout: Double) async -> AccessProbeOutcome {
        let deadline = clock.now.addingTimeInterval(timeout)
        guard let slotID = tenant.slotID else { return .inconclusive(code: "noSlot") }
        let slot: FICSlot
        do {
            slot = try await store.slot(slotID)
        } catch {
            return .inconclusive(code: "storeUnavailable")
        }
        guard slot.state.isServing else { return .inconclusive(code: "slotNotServing") }
        let entraTenant = tenant.entraTenantID.rawValue
        await tokens.forgetTokens(tenantID: entraTenant)
        let source = assertionSources.source(forClientID: slot.identity.managedIdentityClientID)
        let token = tokens.vaultTokenProvider(
            tenantID: entraTenant, source: source, resource: AzureEnvironment.vaultTokenResource(forVaultURL: tenant.key.vaultURL))
        let key = VaultKeyID(vaultURL: tenant.key.vaultURL, name: tenant.key.keyName, version: tenant.key.keyVersion)
        let probe = SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) }
        do {
            let wrapped = try await vault.wrapKey(key, plaintext: probe, token: token, deadline: deadline, expectedTenantID: entraTenant)
            guard let version = VaultKeyID(kid: wrapped.kid)?.version else { return .inconclusive(code: "kidWithoutVersion") }
            let unwrapped = try await vault.unwrapKey(
                VaultKeyID(vaultURL: key.vaultURL, name: key.name, version: version), wrapped: wrapped.value, token: token,
                deadline: deadline, expectedTenantID: entraTenant)
            return unwrapped.value == probe ? .works : .inconclusive(code: "roundTripMismatch")
        } catch let error as KeyVaultError {
            // The closed classification, never the vault's own strings: this code goes into logs.
            let code = error.kind.rawValue
            return error.isCustomerRevocation || error.kind == .keyNotFound ? .refused(code: code) : .inconclusive(code: code)
        } catch let error as AzureIdentityError {
            if case .entra(let aad) = error {
                let code = aad.code.map { "AADSTS\($0)" } ?? aad.kind.rawValue
                return aad.isCustomerRefusal ? .refused(code: code) : .inconclusive(code: code)
            }
            return .inconclusive(code: "identityUnavailable")
        } catch {
            return .inconclusive(code: "unexpected")
        }
    }

    /// Serves `tenant` again after a probe proved access works: the transition (audited, actor
    /// `fedbroker`) at the version the probe was decided on, then this replica's cached tenant
    /// record and key state are dropped (the other replicas learn through the change feed).
    ///
    /// - Throws: the store's error; `versionConflict` when the tenant moved meanwhile (an operator
    ///   suspended it, its key version changed): the next pass looks again.
    func restoreAccess(_ tenant: Tenant) async throws -> Tenant {
        let restored = try await store.transitionTenant(
            tenant.id, expectedVersion: tenant.version, event: .accessRestored, reason: nil, actor: "fedbroker")
        tenantRecords.invalidate(tenant.id)
        keyStates.invalidate(vaultURL: tenant.key.vaultURL, name: tenant.key.keyName)
        return restored
    }
}
