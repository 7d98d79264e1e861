import FedBrokerCore
import Foundation
import HTTPTypes
import Hummingbird

/// Microsoft Graph's federated identity credential endpoints on applications (HTTPS):
/// list (with `$filter`), get, create and delete, with the 20-per-application limit, the name
/// and uniqueness rules, a propagation delay before a change reaches token exchange (WIRE.md §3),
/// and Graph's permission check: only a caller whose token carries a permission to manage the
/// application's credentials gets past 403 (`GraphPermissions`).
struct GraphService: HTTPResponder {
    typealias Context = EmulatorRequestContext
    let state: EmulatorState

    static let acceptedAudiences: Set<String> = [
        "https://graph.microsoft.com", "https://graph.microsoft.com/", "00000003-0000-0000-c000-000000000000",
    ]
    /// `Retry-After` on an injected 429 whose fault names none: Graph always sends one when it throttles.
    static let defaultRetryAfterSeconds = 2

    enum Route: Equatable {
        case list(app: String)
        case create(app: String)
        case get(app: String, credential: String)
        case delete(app: String, credential: String)
    }

    /// `/{v1.0|beta}/applications/{id}` or `/applications(appId='{appId}')`, then
    /// `/federatedIdentityCredentials[/{id}]` or `/federatedIdentityCredentials(name='{name}')`.
    static func route(method: HTTPRequest.Method, path: String) -> Route? {
        var segments = path.split(separator: "/").map { String($0).removingPercentEncoding ?? String($0) }
        guard let version = segments.first, version == "v1.0" || version == "beta" else { return nil }
        segments.removeFirst()
        guard let first = segments.first else { return nil }
        var app: String
        if first.hasPrefix("applications(appId='"), first.hasSuffix("')") {
            app = Self.unquoted(first.dropFirst("applications(appId='".count).dropLast(2))
            segments.removeFirst()
        } else if first == "applications", segments.count >= 2 {
            app = segments[1]
            segments.removeFirst(2)
        } else {
            return nil
        }
        app = app.trimmingCharacters(in: .whitespaces)
        guard let collection = segments.first else { return nil }
        var credential: String?
        if collection.hasPrefix("federatedIdentityCredentials(name='"), collection.hasSuffix("')") {
            credential = "name:" + Self.unquoted(collection.dropFirst("federatedIdentityCredentials(name='".count).dropLast(2))
        } else if collection == "federatedIdentityCredentials" {
            credential = segments.count >= 2 ? segments[1] : nil
        } else {
            return nil
        }
        switch (method, credential) {
        case (.get, nil): return .list(app: app)
        case (.post, nil): return .create(app: app)
        case (.get, let c?): return .get(app: app, credential: c)
        case (.delete, let c?): return .delete(app: app, credential: c)
        default: return nil
        }
    }

    /// The inside of an OData string literal: `''` stands for one quote.
    private static func unquoted(_ inner: Substring) -> String {
        inner.replacingOccurrences(of: "''", with: "'")
    }

    func respond(to request: Request, context: Context) async throws -> Response {
        let requestID = newGUID()
        let clientRequestID = request.headers[.init("client-request-id")!] ?? newGUID()
        let fail: (GraphFailure) -> Response = { failure in
            Reply.json(failure.status, failure.body(requestID: requestID, clientRequestID: clientRequestID, at: state.now),
                       headers: Self.headers(requestID: requestID, clientRequestID: clientRequestID))
        }
        guard let route = Self.route(method: request.method, path: request.uri.path) else {
            return fail(.init(status: 400, code: "BadRequest", message: "Resource not found for the segment '\(request.uri.path)'."))
        }
        let opName: String =
            switch route {
            case .list, .get: "list"
            case .create: "create"
            case .delete: "delete"
            }
        if let fault = try await state.injectFault(service: .graph, operation: opName, target: nil, channel: context.channel) {
            var r = fail(.init(status: fault.status, code: fault.status == 429 ? "TooManyRequests" : "ServiceUnavailable",
                               message: "The service is temporarily unavailable."))
            let retryAfter = fault.retryAfter ?? (fault.status == 429 ? Self.defaultRetryAfterSeconds : nil)
            if let retryAfter { r.headers[.retryAfter] = String(retryAfter) }
            return r
        }
        let caller: PresentedClaims
        switch await authenticate(request) {
        case .success(let claims): caller = claims
        case .failure(let failure): return fail(failure)
        }
        let app: String
        switch route {
        case .list(let a), .create(let a), .get(let a, _), .delete(let a, _): app = a
        }
        if let failure = state.read({ Self.authorize(caller, app: app, in: $0) }) { return fail(failure) }
        state.counters.increment("graph.fic.\(opName)")

        let headers = Self.headers(requestID: requestID, clientRequestID: clientRequestID)
        switch route {
        case .list(let app):
            var filter: GraphFilter?
            if let expression = FormItems(request.uri.query)["$filter"] {
                switch GraphFilter.parse(expression) {
                case .success(let parsed): filter = parsed
                case .failure(let failure): return fail(failure)
                }
            }
            guard let credentials = state.read({ dir in dir.applicationKey(for: app).map { dir.applications[$0]!.federatedCredentials } })
            else { return fail(.applicationNotFound(app)) }
            let listed = credentials.filter { FederatedCredentialMatcher.isListed($0) && (filter?.matches($0) ?? true) }
            let body: JSONValue = .object([
                ("@odata.context", .string("https://graph.microsoft.com/v1.0/$metadata#applications('\(app)')/federatedIdentityCredentials")),
                ("value", .array(listed.map(Self.json))),
            ])
            return Reply.json(200, body, headers: headers)
        case .get(let app, let id):
            let found = state.read { dir -> Directory.FederatedCredential?? in
                guard let key = dir.applicationKey(for: app) else { return .none }
                return .some(dir.applications[key]!.federatedCredentials.first { Self.matches($0, id) && FederatedCredentialMatcher.isListed($0) })
            }
            guard let inApp = found else { return fail(.applicationNotFound(app)) }
            guard let credential = inApp else { return fail(.credentialNotFound(id)) }
            return Reply.json(200, Self.json(credential), headers: headers)
        case .create(let app):
            let body = try await request.bodyString()
            guard let data = body.data(using: .utf8), let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
            else { return fail(.malformedBody) }
            let result = state.mutate { dir in
                Self.create(in: &dir, app: app, object: object, now: state.now)
            }
            switch result {
            case .success(let credential):
                var json = Self.json(credential)
                if case .object(var members) = json {
                    members.insert(("@odata.context", .string("https://graph.microsoft.com/v1.0/$metadata#applications('\(app)')/federatedIdentityCredentials/$entity")), at: 0)
                    json = .object(members)
                }
                return Reply.json(201, json, headers: headers + [("Location", "\(state.currentEndpoints.graph)/v1.0/applications/\(app)/federatedIdentityCredentials/\(credential.id)")])
            case .failure(let failure):
                return fail(failure)
            }
        case .delete(let app, let id):
            let result: GraphFailure? = state.mutate { dir in
                guard let key = dir.applicationKey(for: app) else { return .applicationNotFound(app) }
                guard let index = dir.applications[key]!.federatedCredentials.firstIndex(where: { Self.matches($0, id) && $0.removedFrom == nil })
                else { return .credentialNotFound(id) }
                dir.applications[key]!.federatedCredentials[index].removedFrom =
                    state.now.addingTimeInterval(dir.settings.ficPropagationSeconds)
                return nil
            }
            if let result { return fail(result) }
            return Reply.empty(204, headers: headers)
        }
    }

    /// Creates a credential under Graph's rules. Shared with the control API, which scripts
    /// scenarios through the same rules.
    static func create(in dir: inout Directory, app: String, object: [String: Any], now: Date) -> Result<Directory.FederatedCredential, GraphFailure> {
        guard let key = dir.applicationKey(for: app) else { return .failure(.applicationNotFound(app)) }
        let name = object["name"] as? String ?? ""
        let issuer = object["issuer"] as? String ?? ""
        let subject = object["subject"] as? String ?? ""
        let audiences = object["audiences"] as? [String] ?? []
        let description = object["description"] as? String
        guard !name.isEmpty, !issuer.isEmpty, !subject.isEmpty else { return .failure(.emptyProperties) }
        guard FederatedCredentialMatcher.isValidName(name) else { return .failure(.invalidName(name)) }
        guard audiences.count == 1 else { return .failure(.exactlyOneAudience) }
        for (field, value) in [("issuer", issuer), ("subject", subject), ("audiences", audiences[0]), ("description", description ?? "")]
        where value.count > 600 {
            return .failure(.tooLong(field))
        }
        guard issuer.trimmingCharacters(in: .whitespacesAndNewlines) == issuer else { return .failure(.whitespaceIssuer) }
        let existing = dir.applications[key]!.federatedCredentials.filter(FederatedCredentialMatcher.isListed)
        guard !existing.contains(where: { $0.name.lowercased() == name.lowercased() }) else { return .failure(.nameExists(name)) }
        guard !existing.contains(where: { $0.issuer == issuer && $0.subject == subject }) else {
            return .failure(.issuerSubjectExists(issuer: issuer, subject: subject))
        }
        guard existing.count < 20 else { return .failure(.limitReached) }
        let credential = Directory.FederatedCredential(
            id: newGUID(), name: name, issuer: issuer, subject: subject, audiences: audiences, description: description,
            effectiveFrom: now.addingTimeInterval(dir.settings.ficPropagationSeconds), removedFrom: nil)
        dir.applications[key]!.federatedCredentials.append(credential)
        return .success(credential)
    }

    private static func matches(_ credential: Directory.FederatedCredential, _ id: String) -> Bool {
        if id.hasPrefix("name:") { return credential.name == id.dropFirst(5) }
        return credential.id == id.lowercased() || credential.name == id
    }

    static func json(_ c: Directory.FederatedCredential) -> JSONValue {
        .object([
            ("id", .string(c.id)), ("name", .string(c.name)), ("issuer", .string(c.issuer)),
            ("subject", .string(c.subject)), ("description", .optional(c.description)),
            ("audiences", .strings(c.audiences)),
        ])
    }

    private static func headers(requestID: String, clientRequestID: String) -> [(String, String)] {
        [
            ("Cache-Control", "no-cache"), ("OData-Version", "4.0"), ("request-id", requestID),
            ("client-request-id", clientRequestID), ("Strict-Transport-Security", "max-age=31536000"),
            ("x-ms-ags-diagnostic", "{\"ServerInfo\":{\"DataCenter\":\"Emulator\",\"Slice\":\"E\",\"Ring\":\"1\",\"ScaleUnit\":\"000\",\"RoleInstance\":\"EMU\"}}"),
        ]
    }

    /// Graph accepts tokens the emulated cloud signed for the Graph audience.
    private func authenticate(_ request: Request) async -> Result<PresentedClaims, GraphFailure> {
        guard let token = request.bearerToken else { return .failure(.missingToken) }
        guard let presented = UnverifiedJWT(token), (try? await state.authority.verify(token, as: PresentedClaims.self)) != nil
        else { return .failure(.init(status: 401, code: "InvalidAuthenticationToken", message: "Access token validation failure.")) }
        guard presented.claims.aud.contains(where: { Self.acceptedAudiences.contains($0) }) else { return .failure(.invalidToken) }
        guard TokenLifetime.check(exp: presented.claims.exp, nbf: presented.claims.nbf, now: state.clock.unixSeconds) == .valid else {
            return .failure(.expiredToken)
        }
        return .success(presented.claims)
    }

    /// Graph resolves the application in the token's tenant (an application object lives only in
    /// its home tenant's directory: 404 elsewhere), then checks the caller's permission (403).
    static func authorize(_ caller: PresentedClaims, app: String, in dir: Directory) -> GraphFailure? {
        guard let key = dir.applicationKey(for: app), let target = dir.applications[key],
            caller.tid.map({ $0.lowercased() == target.homeTenantId }) ?? false
        else { return .applicationNotFound(app) }
        let callerAppID = caller.appid ?? caller.azp
        guard GraphPermissions.mayManageCredentials(callerAppID: callerAppID, roles: caller.roles, target: target) else {
            return .insufficientPrivileges
        }
        return nil
    }
}
