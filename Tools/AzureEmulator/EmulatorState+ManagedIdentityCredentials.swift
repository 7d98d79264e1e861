import Foundation

/// A user-assigned managed identity's own federated identity credentials (AKS workload identity:
/// `az identity federated-credential create`), under ARM's rules for them (WIRE.md §3.1, §3.3):
/// at most 20, a URL-friendly name unique on the identity, exactly one audience, a unique
/// issuer and subject, and the same propagation delay as an application's FICs.
extension EmulatorState {
    @discardableResult
    public func addManagedIdentityFederatedCredential(
        clientID: String, name: String, issuer: String, subject: String, audience: String = "api://AzureADTokenExchange",
        description: String? = nil
    ) throws -> Directory.FederatedCredential {
        try addManagedIdentityFederatedCredential(
            clientID: clientID, name: name, issuer: issuer, subject: subject, audiences: [audience], description: description)
    }

    /// As above, with the audiences as the request names them (ARM requires exactly one).
    @discardableResult
    public func addManagedIdentityFederatedCredential(
        clientID: String, name: String, issuer: String, subject: String, audiences: [String], description: String? = nil
    ) throws -> Directory.FederatedCredential {
        guard !name.isEmpty, !issuer.isEmpty, !subject.isEmpty else {
            throw ScenarioError.invalid("Federated Identity Credential from HTTP body has empty properties")
        }
        guard FederatedCredentialMatcher.isValidName(name) else {
            throw ScenarioError.invalid("Federated Identity Credential name '\(name)' is invalid.")
        }
        guard audiences.count == 1, let audience = audiences.first, !audience.isEmpty else {
            throw ScenarioError.invalid("Federated identity credentials must have exactly one audience.")
        }
        for (field, value) in [("issuer", issuer), ("subject", subject), ("audiences", audience), ("description", description ?? "")]
        where value.count > 600 {
            throw ScenarioError.invalid("The \(field) of a federated identity credential is limited to 600 characters.")
        }
        guard issuer.trimmingCharacters(in: .whitespacesAndNewlines) == issuer else {
            throw ScenarioError.invalid("The issuer of a federated identity credential must not have leading or trailing whitespace.")
        }
        let now = self.now
        return try mutate { dir in
            guard let key = dir.managedIdentities.keys.first(where: { $0.lowercased() == clientID.lowercased() }),
                var identity = dir.managedIdentities[key]
            else { throw ScenarioError.notFound("The parent user-assigned identity \(clientID)") }
            let existing = identity.federatedCredentials.filter(FederatedCredentialMatcher.isListed)
            guard !existing.contains(where: { $0.name.lowercased() == name.lowercased() }) else {
                throw ScenarioError.conflict("A federated identity credential named '\(name)' already exists on this managed identity.")
            }
            guard !existing.contains(where: { $0.issuer == issuer && $0.subject == subject }) else {
                throw ScenarioError.invalid("Issuer and subject combination already exists for this Managed Identity.")
            }
            guard existing.count < 20 else {
                throw ScenarioError.invalid("A maximum of 20 federated identity credentials can be added to a user-assigned managed identity.")
            }
            let credential = Directory.FederatedCredential(
                id: newGUID(), name: name, issuer: issuer, subject: subject, audiences: [audience], description: description,
                effectiveFrom: now.addingTimeInterval(dir.settings.ficPropagationSeconds), removedFrom: nil)
            identity.federatedCredentials.append(credential)
            dir.managedIdentities[key] = identity
            return credential
        }
    }

    /// The managed identity with this client id (case-insensitive), if any.
    func managedIdentity(clientID: String) -> Directory.ManagedIdentity? {
        let needle = clientID.lowercased()
        return read { $0.managedIdentities.values.first { $0.clientId.lowercased() == needle } }
    }
}
