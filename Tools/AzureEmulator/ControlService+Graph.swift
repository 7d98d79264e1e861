import Foundation
import Hummingbird

extension ControlService {
    /// `PATCH /control/applications/{app}/graph-permissions` `{"grant":[…],"revoke":[…]}`: an
    /// application's Microsoft Graph application permissions (see `GraphPermissions`), e.g. to
    /// revoke `Application.ReadWrite.OwnedBy` and see Graph's FIC endpoints answer 403.
    static func addGraphRoutes(to api: RouterGroup<EmulatorRequestContext>, state: EmulatorState) {
        api.patch("applications/:app/graph-permissions") { request, context in
            struct Body: Decodable { var grant: [String]?; var revoke: [String]? }
            return try await handle {
                let app = try context.parameters.require("app")
                let b = try await request.decode(as: Body.self, context: context)
                let granted = try state.updateGraphPermissions(appID: app, grant: b.grant ?? [], revoke: b.revoke ?? [])
                let appID = state.read { $0.applicationKey(for: app) } ?? app
                return (200, .object([("appId", .string(appID)), ("graphPermissions", .strings(granted))]))
            }
        }
    }
}
