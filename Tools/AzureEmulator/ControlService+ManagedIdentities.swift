import Foundation
import Hummingbird

extension ControlService {
    /// `POST /control/managed-identities/{clientId}/federated-credentials`
    /// `{"name","issuer","subject","audiences"?,"description"?}`: a FIC on a user-assigned
    /// managed identity (what `az identity federated-credential create` makes), so a token from
    /// that issuer (an AKS cluster's, registered with `POST /control/external-issuers`) can be
    /// exchanged at the token endpoint for the identity's own token.
    static func addManagedIdentityRoutes(to api: RouterGroup<EmulatorRequestContext>, state: EmulatorState) {
        api.post("managed-identities/:clientId/federated-credentials") { request, context in
            struct Body: Decodable { var name: String; var issuer: String; var subject: String; var audiences: [String]?; var description: String? }
            return try await handle {
                let clientID = try context.parameters.require("clientId")
                let b = try await request.decode(as: Body.self, context: context)
                let c = try state.addManagedIdentityFederatedCredential(
                    clientID: clientID, name: b.name, issuer: b.issuer, subject: b.subject,
                    audiences: b.audiences ?? ["api://AzureADTokenExchange"], description: b.description)
                return (201, GraphService.json(c))
            }
        }
    }
}
