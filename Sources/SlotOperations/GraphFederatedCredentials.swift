import AzureIdentity
import BrokerStore
import FedBrokerCore
import Foundation
import GraphClient

/// Slot jobs' view of Graph: the application's credentials through `GraphClient`, with a Graph
/// token obtained as the application itself, in the ISV's tenant, through a serving slot.
///
/// Why through a slot: the application's only credentials are its FICs, so the very first slot
/// has to exist before Graph can be called at all. It is created out of band (Terraform or
/// `az ad app federated-credential create`) and recorded by `serve --bootstrap-slots`; every
/// later slot is created through Graph by `fedbroker slot add`.
public struct GraphFederatedCredentials: FederatedCredentialManaging {
    let client: GraphClient
    let application: GraphApplication
    let token: GraphClient.TokenProvider

    public init(client: GraphClient, application: GraphApplication, token: @escaping GraphClient.TokenProvider) {
        self.client = client
        self.application = application
        self.token = token
    }

    /// A Graph token through the first serving slot that yields one (active slots first).
    public static func tokenThroughServingSlot(
        store: any BrokerStore, tokens: CrossTenantTokenProvider, sources: AssertionSourceCatalog, isvTenantID: String
    ) -> GraphClient.TokenProvider {
        { deadline in
            let slots = try await store.slots().filter(\.state.isServing).sorted {
                ($0.state == .active ? 0 : 1, $0.id) < ($1.state == .active ? 0 : 1, $1.id)
            }
            guard !slots.isEmpty else {
                throw SlotJobStepFailure(
                    "no active slot to obtain a Graph token through: the first slot is bootstrapped out of band (docs/runbooks/add-a-slot.md)")
            }
            var lastFailure: (any Error)?
            for slot in slots {
                do {
                    return try await tokens.token(
                        tenantID: isvTenantID, source: sources.source(forClientID: slot.identity.managedIdentityClientID),
                        resource: GraphClient.resource, deadline: deadline
                    ).token
                } catch {
                    lastFailure = error
                }
            }
            throw lastFailure ?? SlotJobStepFailure("no slot yielded a Graph token")
        }
    }

    public func ensureCredential(name: String, issuer: String, subject: String, deadline: Date) async throws {
        do {
            _ = try await client.createFederatedIdentityCredential(
                NewFederatedIdentityCredential(name: name, issuer: issuer, subject: subject), in: application, token: token,
                deadline: deadline)
        } catch let error as GraphError where error.kind == .nameConflict || error.kind == .duplicateIssuerSubject {
            // A step run again after a crash finds its own credential; an identity already trusted
            // under another name (created by Terraform, say) is adopted as it is.
            let trusting = try await classifying {
                try await client.listFederatedIdentityCredentials(
                    of: application, filter: .init(subject: subject, issuer: issuer), token: token, deadline: deadline)
            }
            guard trusting.isEmpty else { return }
            guard error.kind == .nameConflict else {
                // Graph said the identity is trusted but does not list it yet: its list lags its
                // writes. Retried, never taken for a verdict.
                throw GraphListLag(name: name)
            }
            let named: FederatedIdentityCredential
            do {
                named = try await client.federatedIdentityCredential(named: name, of: application, token: token, deadline: deadline)
            } catch let lookup as GraphError where lookup.kind == .notFound {
                throw GraphListLag(name: name)
            } catch let lookup as GraphError {
                throw Self.classified(lookup)
            }
            guard named.issuer == issuer, named.subject == subject else {
                throw SlotJobStepFailure("Graph: a credential named \(name) already trusts another identity; choose another slot name")
            }
        } catch let error as GraphError {
            throw Self.classified(error)
        }
    }

    public func deleteCredentials(issuer: String, subject: String, deadline: Date) async throws {
        try await classifying {
            let trusting = try await client.listFederatedIdentityCredentials(
                of: application, filter: .init(subject: subject, issuer: issuer), token: token, deadline: deadline)
            for credential in trusting {
                do {
                    try await client.deleteFederatedIdentityCredential(
                        named: credential.name, of: application, token: token, deadline: deadline)
                } catch let error as GraphError where error.kind == .notFound {
                    continue  // deleted meanwhile
                }
            }
        }
    }

    /// Runs a Graph call with its failures classified (see `classified`).
    private func classifying<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as GraphError {
            throw Self.classified(error)
        }
    }

    /// Graph failures no retry can fix stop the job with the SRE's next step; the others are
    /// retried by the runner.
    static func classified(_ error: GraphError) -> any Error {
        switch error.kind {
        case .insufficientPrivileges:
            SlotJobStepFailure(
                "Graph: insufficient privileges (\(error.code)); grant the application Application.ReadWrite.OwnedBy and make it an owner of itself")
        case .credentialLimitReached:
            SlotJobStepFailure("Graph: the application already has 20 federated identity credentials; retire a slot first")
        case .invalidRequest, .invalidArgument, .notFound, .nameConflict, .duplicateIssuerSubject:
            SlotJobStepFailure("Graph refused the request: \(error.description)")
        case .throttled, .server, .transport, .malformedResponse, .unauthorized:
            error
        }
    }
}

/// Graph answered a create with a conflict but does not show the credential yet. Transient: the
/// runner retries the step with backoff.
struct GraphListLag: Error, CustomStringConvertible {
    let name: String
    var description: String { "Graph reports a conflict for credential \(name) but does not list it yet" }
}
