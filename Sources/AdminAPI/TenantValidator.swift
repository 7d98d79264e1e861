import AsyncHTTPClient
import AzureHTTP
import AzureIdentity
import FedBrokerCore
import Foundation
import KeyVault

/// Runs the onboarding validation of one tenant: the chain probe through the tenant's own FIC
/// slot (never another slot: that would prove a trust the broker will not use), with the binding
/// tag required, and turns its report into the record the store keeps.
public struct TenantValidator: Sendable {
    let environment: AzureEnvironment
    let httpClient: HTTPClient
    let clock: any WallClock
    let timeout: Double

    public init(environment: AzureEnvironment, httpClient: HTTPClient, clock: any WallClock = SystemWallClock(), timeout: Double = 30) {
        self.environment = environment
        self.httpClient = httpClient
        self.clock = clock
        self.timeout = timeout
    }

    public func validate(_ tenant: Tenant, slot: FICSlot, bindingValue: String) async -> ValidationRecord {
        let source = IMDSAssertionSource(
            clientID: slot.identity.managedIdentityClientID, endpoint: environment.imdsURL, httpClient: httpClient,
            clock: clock, backoff: Backoff(initial: 0.5, maximum: 2, maxRetries: 2), attemptTimeout: 5)
        let probe = ChainProbe(environment: environment, httpClient: httpClient, clock: clock)
        let key = VaultKeyID(vaultURL: tenant.key.vaultURL, name: tenant.key.keyName, version: tenant.key.keyVersion)
        let report = await probe.run(
            tenantID: tenant.entraTenantID.rawValue, key: key, source: source,
            binding: .init(tagName: TenantOnboarding.bindingTagName, value: bindingValue), timeout: timeout)
        let steps = report.steps.map { step in
            ValidationRecord.Step(
                name: step.name, ok: step.ok, milliseconds: step.milliseconds, detail: AdminProblem.bounded(step.detail),
                code: step.code, responsible: step.responsible, remediation: step.remedy)
        }
        return ValidationRecord(succeeded: report.succeeded, time: clock.now, slotID: slot.id, steps: steps)
    }
}
