import FedBrokerCore
import Foundation
import Hummingbird

/// The Instance Metadata Service's managed-identity endpoint (plain HTTP, as on a VM):
/// `GET /metadata/identity/oauth2/token` for the user-assigned identities attached to the
/// emulated VM (WIRE.md §1.1).
struct IMDSService: HTTPResponder {
    typealias Context = EmulatorRequestContext
    let state: EmulatorState

    func respond(to request: Request, context: Context) async throws -> Response {
        guard request.uri.path == "/metadata/identity/oauth2/token" else {
            return fail(.notFound)
        }
        guard request.method == .get else { return fail(.methodNotAllowed) }
        if let fault = try await state.injectFault(service: .imds, operation: "token", target: nil, channel: context.channel) {
            let failure: IMDSFailure =
                switch fault.status {
                case 429: .tooManyRequests
                case 404: .notFound
                case 410: .init(status: 410, error: "service_unavailable", description: "IMDS is going through updates")
                default: .init(status: fault.status, error: "server_error", description: "Failed to retrieve token from the Active directory.")
                }
            return fail(failure, retryAfter: fault.retryAfter)
        }
        // "Must contain the header Metadata: true … must not contain X-Forwarded-For."
        guard request.headers[.metadata] == "true" else { return fail(.missingMetadataHeader) }
        guard request.headers[.xForwardedFor] == nil else { return fail(.forwardedRequest) }
        guard state.imdsAdmit() else { return fail(.tooManyRequests) }
        defer { state.imdsDone() }

        let query = FormItems(request.uri.query)
        guard !query.hasDuplicateNames else { return fail(.duplicateParameter) }
        guard let apiVersion = query["api-version"] else { return fail(.missingAPIVersion) }
        guard apiVersion >= "2018-02-01", apiVersion.count == 10 else { return fail(.unsupportedAPIVersion(apiVersion)) }
        guard let resource = query["resource"], !resource.isEmpty else { return fail(.missingResource) }
        let selectors = ["client_id", "object_id", "msi_res_id"].filter { query[$0] != nil }
        guard selectors.count <= 1 else { return fail(.ambiguousSelector) }

        let identity: Directory.ManagedIdentity
        switch resolveIdentity(query: query, selector: selectors.first) {
        case .success(let found): identity = found
        case .failure(let failure): return fail(failure)
        }
        state.counters.increment("imds.token", "imds.token.\(identity.clientId)")

        let (token, now, lifetime) = try await Self.token(for: identity, resource: resource, state: state)
        var body: [(String, JSONValue)] = [
            ("access_token", .string(token)),
            ("client_id", .string(identity.clientId)),
            ("expires_in", .string(String(lifetime - 1))),
            ("expires_on", .string(String(now + lifetime))),
            ("ext_expires_in", .string(String(lifetime - 1))),
            ("not_before", .string(String(now))),
            ("resource", .string(resource)),
            ("token_type", "Bearer"),
        ]
        if query["object_id"] != nil { body.append(("object_id", .string(identity.principalId))) }
        if query["msi_res_id"] != nil { body.append(("msi_res_id", .string(identity.resourceId))) }
        return Reply.json(200, .object(body), headers: [("Server", "IMDS/150.870.65.1854")])
    }

    /// The identity's token for `resource`: the claims IMDS issues, which the token endpoint also
    /// issues to the identity when it presents a federated assertion (AKS workload identity), so
    /// both paths yield the token an application's FIC trusting the identity matches.
    static func token(
        for identity: Directory.ManagedIdentity, resource: String, state: EmulatorState
    ) async throws -> (token: String, issuedAt: Int64, lifetime: Int64) {
        let lifetime = state.read { $0.settings.managedIdentityTokenLifetimeSeconds }
        let now = state.clock.unixSeconds
        let claims = ManagedIdentityClaims(
            aud: audience(for: resource), iss: "https://login.microsoftonline.com/\(identity.tenantId)/v2.0",
            iat: now, nbf: now, exp: now + lifetime, appid: identity.clientId, azp: identity.clientId,
            oid: identity.principalId, sub: identity.principalId, tid: identity.tenantId, uti: newGUID(),
            xms_mirid: identity.resourceId)
        return (try await state.authority.sign(claims), now, lifetime)
    }

    /// The `aud` the token carries: the resource as asked, without a `/.default` suffix.
    static func audience(for resource: String) -> String {
        resource.hasSuffix("/.default") ? String(resource.dropLast("/.default".count)) : resource
    }

    private func resolveIdentity(query: FormItems, selector: String?) -> Result<Directory.ManagedIdentity, IMDSFailure> {
        let attached = state.read { $0.managedIdentities.values.filter(\.attached) }
        guard let selector, let value = query[selector] else {
            // No selector: only unambiguous when exactly one identity is attached.
            switch attached.count {
            case 0: return .failure(.noIdentity)
            case 1: return .success(attached[0])
            default: return .failure(.multipleIdentities)
            }
        }
        let needle = value.lowercased()
        let match = attached.first { identity in
            switch selector {
            case "client_id": identity.clientId.lowercased() == needle
            case "object_id": identity.principalId.lowercased() == needle
            default: identity.resourceId.lowercased() == needle
            }
        }
        return match.map { .success($0) } ?? .failure(.identityNotFound)
    }

    private func fail(_ failure: IMDSFailure, retryAfter: Int? = nil) -> Response {
        var headers: [(String, String)] = [("Server", "IMDS/150.870.65.1854")]
        if let retryAfter { headers.append(("Retry-After", String(retryAfter))) }
        return Reply.json(failure.status, failure.body, headers: headers)
    }
}
