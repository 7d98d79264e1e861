import Foundation

/// What slot jobs need of Microsoft Graph: the application's federated identity credentials,
/// created and deleted idempotently, so a step run again after a crash finds its own work done.
public protocol FederatedCredentialManaging: Sendable {
    /// Creates the credential `name` trusting `issuer` + `subject` for `api://AzureADTokenExchange`,
    /// or finds it already there with that issuer and subject.
    /// - Throws: when a credential of that name trusts someone else, when another credential
    ///   already trusts this identity, when the application has 20, or when Graph refuses.
    func ensureCredential(name: String, issuer: String, subject: String, deadline: Date) async throws
    /// Deletes every credential that trusts `issuer` + `subject`; none left counts as done.
    func deleteCredentials(issuer: String, subject: String, deadline: Date) async throws
}
