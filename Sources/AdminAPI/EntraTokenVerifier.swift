import AsyncHTTPClient
import AzureIdentity
import FedBrokerCore
import Foundation
import JWTKit
import Logging
import NIOCore
import NIOFoundationCompat
import Synchronization

/// Validates staff access tokens the way Entra's own libraries do: RS256 signatures against the
/// keys the ISV tenant's OpenID discovery document points at, the issuer that document names,
/// one of the admin API's audiences, and the token's lifetime.
///
/// Keys are cached; a token signed with a key id the cache does not know triggers one refetch
/// (Entra rolls its signing keys), at most once per `jwksRefetchInterval`, so garbage tokens
/// cannot turn into a flood of requests to the authority.
public actor EntraTokenVerifier {
    public struct Claims: JWTPayload {
        var aud: AudienceClaim
        var iss: IssuerClaim
        var exp: ExpirationClaim
        var nbf: NotBeforeClaim?
        var tid: String?
        var oid: String?
        var sub: SubjectClaim?
        var name: String?
        var preferred_username: String?
        var roles: [String]?
        /// The client the access token was issued to (v2.0 `azp`, v1.0 `appid`). ID tokens have
        /// neither, so requiring one keeps an ID token from passing as an access token.
        var azp: String?
        var appid: String?

        public func verify(using algorithm: some JWTAlgorithm) async throws {}
    }

    struct Discovery: Decodable {
        var issuer: String
        var jwks_uri: String
    }

    let authorityURL: String
    let configuration: AdminAPIConfiguration
    let httpClient: HTTPClient
    let clock: any WallClock
    let logger: Logger
    private var keys: JWTKeyCollection?
    private var knownKeyIDs: Set<String> = []
    private var issuer: String?
    private var lastFetch: Date?
    private var fetching: Task<Void, Never>?

    public init(
        authorityURL: String, configuration: AdminAPIConfiguration, httpClient: HTTPClient,
        clock: any WallClock = SystemWallClock(), logger: Logger
    ) {
        var authority = authorityURL
        while authority.hasSuffix("/") { authority.removeLast() }
        self.authorityURL = authority
        self.configuration = configuration
        self.httpClient = httpClient
        self.clock = clock
        self.logger = logger
    }

    /// The staff member the token proves, or an `AdminProblem` (401, or 503 when the authority's
    /// keys cannot be had).
    public func principal(bearer token: String) async throws(AdminProblem) -> StaffPrincipal {
        guard token.utf8.count <= 16 * 1024 else { throw .unauthenticated("the token is too long") }
        guard let header = JWTPeek.header(of: token) else { throw .unauthenticated("the bearer token is not a JWT") }
        guard header["alg"] as? String == "RS256" else { throw .unauthenticated("tokens must be signed with RS256") }
        guard let kid = header["kid"] as? String else { throw .unauthenticated("the token names no signing key (kid)") }
        try await self.ensureKeys(knowing: kid)
        guard let keys, let issuer else { throw .unauthenticated("no signing keys") }
        let claims: Claims
        do {
            claims = try await keys.verify(token, as: Claims.self)
        } catch {
            throw .unauthenticated("the token's signature does not verify with the authority's keys")
        }
        let now = clock.now
        let skew = configuration.tokenClockSkew
        guard claims.exp.value.addingTimeInterval(skew) > now else { throw .unauthenticated("the token has expired") }
        if let nbf = claims.nbf?.value, nbf.addingTimeInterval(-skew) > now {
            throw .unauthenticated("the token is not valid yet")
        }
        // Entra issues v2.0 tokens with the discovery document's issuer and v1.0 tokens (what
        // `az account get-access-token --resource` gets unless the app asks for v2) with the STS one.
        let v1Issuer = "https://sts.windows.net/\(configuration.staffTenantID.lowercased())/"
        guard claims.iss.value == issuer || claims.iss.value.lowercased() == v1Issuer,
            claims.tid?.lowercased() == configuration.staffTenantID.lowercased()
        else {
            throw .unauthenticated("the token was not issued by the ISV's tenant")
        }
        guard claims.azp != nil || claims.appid != nil else {
            throw .unauthenticated("the token is not an access token (no azp or appid)")
        }
        guard claims.aud.value.contains(where: { configuration.audiences.contains($0) }) else {
            throw .unauthenticated("the token is not for the admin API (wrong audience)")
        }
        guard let oid = claims.oid, Self.isPrintableID(oid) else { throw .unauthenticated("the token has no usable oid") }
        let roles = Set((claims.roles ?? []).compactMap(AdminRole.init(rawValue:)))
        let name = AdminProblem.bounded(claims.name ?? claims.preferred_username ?? "")
        return StaffPrincipal(objectID: oid, name: String(name.prefix(100)), roles: roles)
    }

    private func ensureKeys(knowing kid: String) async throws(AdminProblem) {
        if self.keys != nil, self.knownKeyIDs.contains(kid) { return }
        // One fetch at a time, shared by every request that needs it, and at most one per
        // interval whether or not keys were ever loaded: unknown kids and an unreachable
        // authority must not turn into a flood of requests to it.
        if let fetching = self.fetching {
            await fetching.value
        } else if let last = self.lastFetch, clock.now.timeIntervalSince(last) < configuration.jwksRefetchInterval {
            // Too soon to ask again: decide with what we have.
        } else {
            let task = Task { await self.refresh() }
            self.fetching = task
            await task.value
            self.fetching = nil
        }
        guard self.keys != nil else {
            throw AdminProblem(
                status: .serviceUnavailable, code: "authority_unavailable", title: "Authority unavailable",
                detail: "the signing keys of the staff tenant could not be fetched; try again")
        }
        guard self.knownKeyIDs.contains(kid) else { throw .unauthenticated("the token's signing key is unknown") }
    }

    private func refresh() async {
        do {
            try await self.fetchKeys()
        } catch {
            logger.error(
                "fetching the staff tenant's signing keys failed",
                metadata: ["fb.authority": "\(authorityURL)", "fb.cause": "\(String(describing: type(of: error)))"])
        }
    }

    private func fetchKeys() async throws {
        self.lastFetch = clock.now
        let tenant = configuration.staffTenantID.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(["-"])) ?? ""
        let discovery = try JSONDecoder().decode(
            Discovery.self, from: try await self.get("\(authorityURL)/\(tenant)/v2.0/.well-known/openid-configuration"))
        // Keys only from the authority itself: a discovery document cannot send us elsewhere.
        guard let jwksHost = URL(string: discovery.jwks_uri)?.host, jwksHost == URL(string: authorityURL)?.host,
            discovery.jwks_uri.hasPrefix("https://")
        else { throw AdminProblem.unauthenticated("the discovery document points at keys off the authority") }
        let data = try await self.get(discovery.jwks_uri)
        let jwks = try JSONDecoder().decode(JWKS.self, from: data)
        let collection = JWTKeyCollection()
        try await collection.add(jwks: jwks)
        self.keys = collection
        self.knownKeyIDs = Set(jwks.keys.compactMap { $0.keyIdentifier?.string })
        self.issuer = discovery.issuer.replacingOccurrences(of: "{tenantid}", with: configuration.staffTenantID)
        logger.info("staff tenant signing keys loaded", metadata: ["fb.keys": "\(self.knownKeyIDs.count)"])
    }

    private func get(_ url: String) async throws -> Data {
        let response = try await httpClient.execute(HTTPClientRequest(url: url), timeout: .seconds(10))
        guard response.status == .ok else { throw AdminProblem.unauthenticated("the authority answered \(response.status.code)") }
        return Data(buffer: try await response.body.collect(upTo: 1 << 20))
    }

    static func isPrintableID(_ text: String) -> Bool {
        (1...64).contains(text.count) && text.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }
    }
}
