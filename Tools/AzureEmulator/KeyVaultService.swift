import Crypto
import CryptoExtras
import FedBrokerCore
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// One Key Vault's keys data plane (HTTPS, one listener per vault so each vault has its own
/// `https://localhost:PORT` and the `kid` it returns is a usable URL): get key, update key,
/// wrapkey, unwrapkey, with the challenge, token checks, RBAC, key attributes and the vault's
/// transaction budget (WIRE.md §4, §5).
struct KeyVaultService: HTTPResponder {
    typealias Context = EmulatorRequestContext
    let state: EmulatorState
    let vaultName: String

    static let serviceVersion = "1.9.2700.1"
    static let acceptedAudiences: Set<String> = [
        "https://vault.azure.net", "https://vault.azure.net/", "cfa8b339-82a2-471a-a3c9-0fc0be7a4093",
    ]
    static let rsaAlgorithms = ["RSA-OAEP-256", "RSA-OAEP", "RSA1_5"]

    enum Operation: Equatable {
        case getKey(name: String, version: String?)
        case wrap(name: String, version: String?)
        case unwrap(name: String, version: String?)
        case update(name: String, version: String?)

        var name: String {
            switch self {
            case .getKey: "getkey"
            case .update: "updatekey"
            case .wrap: "wrapkey"
            case .unwrap: "unwrapkey"
            }
        }
    }

    /// Parses `/keys/{name}[/{version}][/wrapkey|/unwrapkey]` (GET, PATCH for Update Key,
    /// POST); the operation segment is case-insensitive, and an empty or missing version means
    /// the current one.
    static func route(method: HTTPRequest.Method, path: String) -> Operation? {
        var segments = path.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard segments.first == "" else { return nil }
        segments.removeFirst()
        guard segments.count >= 2, segments[0].lowercased() == "keys", !segments[1].isEmpty else { return nil }
        let name = segments[1]
        var rest = Array(segments.dropFirst(2))
        if method == .get || method == .patch {
            if rest.last == "" { rest.removeLast() }
            guard rest.count <= 1 else { return nil }
            let version = rest.first.flatMap { $0.isEmpty ? nil : $0 }
            return method == .get ? .getKey(name: name, version: version) : .update(name: name, version: version)
        }
        guard method == .post, let op = rest.last?.lowercased(), op == "wrapkey" || op == "unwrapkey" else { return nil }
        rest.removeLast()
        guard rest.count <= 1 else { return nil }
        let version = rest.first.flatMap { $0.isEmpty ? nil : $0 }
        return op == "wrapkey" ? .wrap(name: name, version: version) : .unwrap(name: name, version: version)
    }

    /// Key Vault accepts the 7.x data-plane versions (with or without a preview suffix) and the dated ones.
    static func isSupportedAPIVersion(_ v: String) -> Bool {
        let base = v.split(separator: "-preview").first.map(String.init) ?? v
        if base.hasPrefix("7."), let minor = Int(base.dropFirst(2)), (0...6).contains(minor) { return true }
        if base == "2016-10-01" || base == "2025-07-01" { return true }
        return false
    }

    func respond(to request: Request, context: Context) async throws -> Response {
        let clientRequestID = request.headers[.msClientRequestID]
        let reply = Replier(state: state, vaultName: vaultName, clientRequestID: clientRequestID, channel: context.channel)
        guard let vault = state.read({ $0.vaults[vaultName.lowercased()] }) else {
            return reply.failure(.notFoundPath(), tenantID: nil)
        }
        let operation = Self.route(method: request.method, path: request.uri.path)

        if let fault = try await state.injectFault(
            service: .keyvault, operation: operation?.name ?? "other", target: vault.name, channel: context.channel)
        {
            let failure: KeyVaultFailure =
                fault.status == 429 ? .throttled
                : fault.status == 403 ? .firewall
                : .init(status: fault.status, code: fault.status == 503 ? "ServiceUnavailable" : "InternalServerError",
                        message: "The service is temporarily unavailable. Please retry.")
            return reply.failure(failure, tenantID: vault.tenantId, retryAfter: fault.retryAfter)
        }

        // The challenge comes first and never needs the body (SDKs send an empty first request).
        let caller: Caller
        switch await authenticate(request, vault: vault) {
        case .success(let c): caller = c
        case .failure(let failure): return reply.failure(failure, tenantID: vault.tenantId)
        }

        let query = FormItems(request.uri.query)
        guard let apiVersion = query["api-version"] else { return reply.failure(.missingAPIVersion, tenantID: vault.tenantId) }
        guard Self.isSupportedAPIVersion(apiVersion) else {
            return reply.failure(.unsupportedAPIVersion(apiVersion), tenantID: vault.tenantId)
        }
        guard let operation else {
            let known = request.uri.path.lowercased().hasPrefix("/keys/")
            return reply.failure(known ? .methodNotAllowed : .notFoundPath(), tenantID: vault.tenantId)
        }
        guard state.vaultAdmit(vault) else {
            state.counters.increment("keyvault.throttled", "keyvault.\(vault.name.lowercased()).throttled")
            return reply.failure(.throttled, tenantID: vault.tenantId)
        }
        state.counters.increment("keyvault.\(operation.name)", "keyvault.\(vault.name.lowercased()).\(operation.name)")

        let (keyName, version, action): (String, String?, RoleBasedAccess.DataAction) =
            switch operation {
            case .getKey(let n, let v): (n, v, .read)
            case .wrap(let n, let v): (n, v, .wrap)
            case .unwrap(let n, let v): (n, v, .unwrap)
            case .update(let n, let v): (n, v, .update)
            }
        guard let assignment = RoleBasedAccess.authorizingAssignment(
            principalID: caller.objectID, action: action, keyName: keyName, assignments: vault.roleAssignments, now: state.now)
        else {
            let failure = KeyVaultFailure.forbiddenByRbac(
                appID: caller.appID, objectID: caller.objectID, issuer: caller.issuer, action: action.rawValue,
                resource: "\(vault.resourceID)/keys/\(keyName.lowercased())", vault: vault.name, region: vault.region)
            return reply.failure(failure, tenantID: vault.tenantId)
        }
        let rbac = reply.withAssignment(assignment.id)

        guard let key = vault.keys[keyName.lowercased()] else { return rbac.failure(.keyNotFound(keyName), tenantID: vault.tenantId) }
        guard let keyVersion = version.map({ key.version($0) }) ?? key.latest else {
            return rbac.failure(.keyVersionNotFound(keyName, version: version ?? ""), tenantID: vault.tenantId)
        }
        switch operation {
        case .getKey:
            return rbac.ok(KeyBundle.json(key: key, version: keyVersion, vault: vault, baseURL: vaultBaseURL))
        case .update:
            switch KeyUpdateRequest.parse(try await request.bodyString()) {
            case .success(let update):
                let updated = try applyUpdate(update, key: key.name, version: keyVersion.version)
                return rbac.ok(KeyBundle.json(key: updated.key, version: updated.version, vault: vault, baseURL: vaultBaseURL))
            case .failure(let failure):
                return rbac.failure(failure, tenantID: vault.tenantId)
            }
        case .wrap, .unwrap:
            let body = try await request.bodyString()
            let result = Self.cryptoOperation(
                wrap: operation.name == "wrapkey", body: body, key: key, version: keyVersion, now: state.clock.unixSeconds)
            switch result {
            case .success(let value):
                if let observer = state.authority.observer {
                    Self.observe(requestBody: body, response: value, observer)
                }
                let kid = "\(vaultBaseURL)/keys/\(key.name)/\(keyVersion.version)"
                return rbac.ok(.object([("kid", .string(kid)), ("value", .string(value))]))
            case .failure(let failure):
                return rbac.failure(failure, tenantID: vault.tenantId)
            }
        }
    }

    private var vaultBaseURL: String { state.vaultURL(vaultName) ?? "https://localhost" }

    /// Applies Update Key to one version and returns the key as it now is, for the KeyBundle.
    private func applyUpdate(
        _ update: KeyUpdateRequest, key: String, version: String
    ) throws -> (key: Directory.Key, version: Directory.KeyVersion) {
        try state.updateKey(
            vault: vaultName, name: key, version: version, enabled: update.attributes?.enabled, keyOps: update.keyOps,
            notBefore: update.attributes?.nbf.map { .some($0) }, expires: update.attributes?.exp.map { .some($0) },
            tags: update.tags)
        guard let updated = state.read({ $0.vaults[vaultName.lowercased()]?.keys[key.lowercased()] }),
            let current = updated.version(version)
        else { throw ScenarioError.notFound("Key \(key) in \(vaultName)") }
        return (updated, current)
    }

    // MARK: Authentication

    struct Caller {
        var objectID: String
        var appID: String
        var issuer: String
    }

    private func authenticate(_ request: Request, vault: Directory.Vault) async -> Result<Caller, KeyVaultFailure> {
        guard let token = request.bearerToken else { return .failure(.missingToken) }
        guard let presented = UnverifiedJWT(token) else { return .failure(.malformedToken) }
        guard presented.keyID == state.authority.keyID,
            (try? await state.authority.verify(token, as: PresentedClaims.self)) != nil
        else { return .failure(.unresolvableSigningKey(encodedHeader: presented.encodedHeader)) }
        let claims = presented.claims
        guard claims.aud.contains(where: { Self.acceptedAudiences.contains($0) }) else {
            return .failure(.invalidAudience(found: claims.aud.first ?? ""))
        }
        let expectedIssuer = "https://sts.windows.net/\(vault.tenantId)/"
        guard claims.iss == expectedIssuer else {
            return .failure(.invalidIssuer(expectedTenant: vault.tenantId, found: claims.iss ?? ""))
        }
        guard TokenLifetime.check(exp: claims.exp, nbf: claims.nbf, now: state.clock.unixSeconds) == .valid else {
            return .failure(.tokenExpired)
        }
        return .success(Caller(objectID: claims.oid ?? claims.sub ?? "", appID: claims.appid ?? "", issuer: claims.iss ?? ""))
    }

    // MARK: Crypto

    /// wrapkey / unwrapkey on one key version: key_ops, enabled, nbf/exp, algorithm, value.
    /// Pure apart from the RSA arithmetic, so the rules are unit-tested directly.
    static func cryptoOperation(
        wrap: Bool, body: String, key: Directory.Key, version: Directory.KeyVersion, now: Int64
    ) -> Result<String, KeyVaultFailure> {
        let opName = wrap ? "wrapKey" : "unwrapKey"
        guard version.keyOps.contains(opName) else { return .failure(.operationForbidden(opName)) }
        // Disabled keys refuse unwrap. Expired or not-yet-valid keys still unwrap ("they don't
        // return 403"), but refuse wrap.
        if !wrap && !version.enabled { return .failure(.keyDisabled(opName)) }
        if wrap {
            if let exp = version.expires, now >= exp { return .failure(.keyExpired(opName)) }
            if let nbf = version.notBefore, now < nbf { return .failure(.keyNotYetValid(opName)) }
        }
        guard let data = body.data(using: .utf8), !data.isEmpty,
            let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { return .failure(.badParameter("Property 'alg' is required.\r\nProperty 'value' is required.\r\n")) }
        guard let alg = object["alg"] as? String else { return .failure(.badParameter("Property 'alg' is required.\r\n")) }
        guard let valueString = object["value"] as? String, let value = Base64URL.decode(valueString) else {
            return .failure(.valueNotBase64URL)
        }
        let padding: _RSA.Encryption.Padding
        switch alg {
        case "RSA-OAEP-256": padding = .PKCS1_OAEP_SHA256
        case "RSA-OAEP": padding = .PKCS1_OAEP
        case "RSA1_5": padding = ._WEAK_AND_INSECURE_PKCS_V1_5
        default: return .failure(.invalidAlgorithm(alg))
        }
        guard let privateKey = try? _RSA.Encryption.PrivateKey(derRepresentation: version.privateKeyDER) else {
            return .failure(.init(status: 500, code: "InternalServerError", message: "Key material unavailable."))
        }
        if wrap {
            guard value.count <= privateKey.publicKey.maximumEncryptSize(with: padding) else {
                return .failure(.badParameter("The length of the value is too long for the key and algorithm."))
            }
            guard let sealed = try? privateKey.publicKey.encrypt(value, padding: padding) else {
                return .failure(.badParameter("The value could not be wrapped."))
            }
            return .success(Base64URL.encode(sealed))
        }
        guard value.count == version.keySize / 8, let opened = try? privateKey.decrypt(value, padding: padding) else {
            return .failure(alg == "RSA1_5" ? .badPKCS1Padding : .badOAEPPadding)
        }
        return .success(Base64URL.encode(opened))
    }

    /// Both sides of a successful wrapkey/unwrapkey: one of them is a plaintext envelope key.
    static func observe(requestBody: String, response: String, _ observer: @Sendable (IssuedSecret) -> Void) {
        if let object = try? JSONSerialization.jsonObject(with: Data(requestBody.utf8)) as? [String: Any],
            let value = object["value"] as? String, let bytes = Base64URL.decode(value)
        {
            observer(.keyMaterial(bytes))
        }
        if let bytes = Base64URL.decode(response) { observer(.keyMaterial(bytes)) }
    }

    // MARK: Replies

    /// Builds responses with the Key Vault headers every response carries.
    struct Replier {
        let state: EmulatorState
        let vaultName: String
        let clientRequestID: String?
        let channel: any Channel
        var assignmentID: String?

        init(state: EmulatorState, vaultName: String, clientRequestID: String?, channel: any Channel) {
            self.state = state
            self.vaultName = vaultName
            self.clientRequestID = clientRequestID
            self.channel = channel
        }

        func withAssignment(_ id: String) -> Replier {
            var copy = self
            copy.assignmentID = id
            return copy
        }

        private var headers: [(String, String)] {
            let region = state.read { $0.vaults[vaultName.lowercased()]?.region } ?? "westus"
            let peer = channel.remoteAddress?.ipAddress ?? "127.0.0.1"
            var h: [(String, String)] = [
                ("Cache-Control", "no-cache"), ("Pragma", "no-cache"), ("Expires", "-1"),
                ("Strict-Transport-Security", "max-age=31536000;includeSubDomains"),
                ("X-Content-Type-Options", "nosniff"), ("Date", AzureErrors.httpDate(state.now)),
                ("x-ms-keyvault-region", region),
                ("x-ms-keyvault-network-info", "conn_type=Ipv4;addr=\(peer);act_addr_fam=InterNetwork;"),
                ("x-ms-keyvault-service-version", KeyVaultService.serviceVersion),
                ("x-ms-request-id", newGUID()),
            ]
            if let clientRequestID { h.append(("x-ms-client-request-id", clientRequestID)) }
            if let assignmentID {
                h.append(("x-ms-keyvault-rbac-assignment-id", assignmentID))
                h.append(("x-ms-keyvault-rbac-cache", "ra_age=1;da_age=1;rd_age=1;brd_age=1;ra_notif_age=1;dec_lev=1;"))
            }
            return h
        }

        func ok(_ body: JSONValue) -> Response { Reply.json(200, body, headers: headers) }

        func failure(_ failure: KeyVaultFailure, tenantID: String?, retryAfter: Int? = nil) -> Response {
            var h = headers
            if failure.challenge, let tenantID {
                let authority = state.currentEndpoints.authority
                h.append(("WWW-Authenticate", "Bearer authorization=\"\(authority)/\(tenantID)\", resource=\"https://vault.azure.net\""))
            }
            if let retryAfter { h.append(("Retry-After", String(retryAfter))) }
            return Reply.json(failure.status, failure.body, headers: h)
        }
    }
}

/// The KeyBundle JSON of GET /keys/{name}/{version}.
enum KeyBundle {
    static func json(key: Directory.Key, version: Directory.KeyVersion, vault: Directory.Vault, baseURL: String) -> JSONValue {
        var n = ""
        var e = ""
        if let pk = try? _RSA.Encryption.PrivateKey(derRepresentation: version.privateKeyDER),
            let primitives = try? pk.publicKey.getKeyPrimitives()
        {
            n = Base64URL.encode(primitives.modulus)
            e = Base64URL.encode(primitives.publicExponent)
        }
        var attributes: [(String, JSONValue)] = [("enabled", .bool(version.enabled))]
        if let nbf = version.notBefore { attributes.append(("nbf", .int(nbf))) }
        if let exp = version.expires { attributes.append(("exp", .int(exp))) }
        attributes += [
            ("created", .int(version.created)), ("updated", .int(version.updated)),
            ("recoveryLevel", .string(vault.recoveryLevel)),
            ("recoverableDays", .int(Int64(vault.softDeleteRetentionDays))),
            ("exportable", false),
        ]
        var bundle: [(String, JSONValue)] = [
            ("key", .object([
                ("kid", .string("\(baseURL)/keys/\(key.name)/\(version.version)")),
                ("kty", "RSA"),
                ("key_ops", .strings(version.keyOps)),
                ("n", .string(n)),
                ("e", .string(e)),
            ])),
            ("attributes", .object(attributes)),
        ]
        if !key.tags.isEmpty {
            bundle.append(("tags", .object(key.tags.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) })))
        }
        return .object(bundle)
    }
}
