import AdminAPIModel
import FedBrokerCore
import Foundation
import KeyVault

/// Domain records as the document's schemas.
extension AdminHandler {
    func schema(_ tenant: Tenant, _ onboarding: TenantOnboarding?) -> Components.Schemas.Tenant {
        let binding = onboarding?.bindingValue ?? ""
        return Components.Schemas.Tenant(
            id: tenant.id.rawValue, displayName: tenant.displayName, geo: tenant.geo,
            state: Components.Schemas.TenantState(rawValue: tenant.state.rawValue) ?? .suspended,
            providerConfig: .init(
                _type: .azure, tenantId: tenant.entraTenantID.rawValue, vaultUri: tenant.key.vaultURL,
                keyName: tenant.key.keyName),
            slotId: tenant.slotID?.rawValue, keyLocked: tenant.lifecycle.wasActivated,
            binding: .init(tagName: TenantOnboarding.bindingTagName, tagValue: binding),
            customer: self.instructions(for: tenant, binding: binding),
            lastValidation: onboarding?.lastValidation.map(Self.schema),
            suspensionReason: tenant.state == .suspended || tenant.state == .accessLost ? onboarding?.suspensionReason : nil,
            createdAt: tenant.createdAt, updatedAt: tenant.updatedAt, version: tenant.version.rawValue)
    }

    static func schema(_ record: ValidationRecord) -> Components.Schemas.ValidationResult {
        .init(
            succeeded: record.succeeded, validatedAt: record.time, slotId: record.slotID?.rawValue,
            steps: record.steps.map { step in
                .init(
                    name: step.name, ok: step.ok, milliseconds: step.milliseconds, detail: step.detail, code: step.code,
                    responsible: step.responsible.flatMap(Components.Schemas.ValidationStep.ResponsiblePayload.init(rawValue:)),
                    remediation: step.remediation)
            })
    }

    /// What the customer's admin must do, with the commands filled in for this tenant.
    func instructions(for tenant: Tenant, binding: String) -> Components.Schemas.CustomerInstructions {
        let appID = environment.applicationClientID ?? ""
        var consent = "\(Self.trimmed(environment.authorityURL))/\(tenant.entraTenantID.rawValue)/adminconsent?client_id=\(appID)"
        if let redirect = configuration.consentRedirectURI,
            let encoded = redirect.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(["-", ".", "_", "~"]))
        {
            consent += "&redirect_uri=\(encoded)"
        }
        let key = VaultKeyID(vaultURL: tenant.key.vaultURL, name: tenant.key.keyName)
        let role = "Key Vault Crypto Service Encryption User"
        return .init(
            consentUrl: consent, applicationClientId: appID, applicationDisplayName: configuration.applicationDisplayName,
            roleName: role,
            roleCommand: """
                az role assignment create --role "\(role)" --assignee-object-id "$(az ad sp show --id \(appID) --query id -o tsv)" \
                --assignee-principal-type ServicePrincipal --scope "$(az keyvault show --name \(key.vaultName) --query id -o tsv)/keys/\(key.name)"
                """,
            tagCommand: ChainProbe.Binding(tagName: TenantOnboarding.bindingTagName, value: binding).tagCommand(for: key)
        )
    }

    static func schema(_ caller: Caller) -> Components.Schemas.Caller {
        .init(
            id: caller.id, identity: caller.identity,
            grants: caller.grants.map { grant in
                let tenants: [String] =
                    switch grant.tenants {
                    case .all: ["*"]
                    case .only(let ids): ids.map(\.rawValue).sorted()
                    }
                return .init(
                    operations: grant.operations.sorted().compactMap { Components.Schemas.KeyOperation(rawValue: $0.rawValue) },
                    tenants: tenants)
            }, enabled: caller.enabled, requireContext: caller.requireContext, version: caller.version.rawValue)
    }

    static func schema(_ entry: AuditEntry) -> Components.Schemas.AuditRecord {
        let record = entry.record
        let (outcome, code): (Components.Schemas.AuditRecord.OutcomePayload, String?) =
            switch record.outcome {
            case .success: (.success, nil)
            case .failure(let code): (.failure, code)
            }
        return .init(
            id: record.id.lowercaseText, time: record.time, actor: record.actor, tenantId: record.tenantID?.rawValue,
            operation: record.operation, keyVersion: record.keyVersion, outcome: outcome, errorCode: code,
            latencyUs: record.latencyMicroseconds, requestId: record.requestID, clientRequestId: record.clientRequestID,
            detail: record.detail)
    }

    static func trimmed(_ url: String) -> String {
        var url = url
        while url.hasSuffix("/") { url.removeLast() }
        return url
    }
}
