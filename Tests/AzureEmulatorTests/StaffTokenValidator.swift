import FedBrokerCore
import Foundation
import JWTKit
import Testing

/// Validates a staff token the way the admin API does, knowing only the authority and the
/// expected audience: fetch `{authority}/{tenant}/v2.0/.well-known/openid-configuration`, its
/// `jwks_uri`, verify the RS256 signature with jwt-kit against those keys, then issuer,
/// audience and lifetime against the emulator's clock. Proves the emulator's tokens pass a
/// validator that has never seen the emulator's key any other way.
struct StaffTokenValidator {
    let harness: Harness

    struct Claims: JWTPayload {
        var aud: AudienceClaim
        var iss: IssuerClaim
        var iat: IssuedAtClaim
        var nbf: NotBeforeClaim
        var exp: ExpirationClaim
        var aio: String
        /// v2.0 tokens name the client in `azp`, v1.0 tokens in `appid`.
        var azp: String?
        var azpacr: String?
        var appid: String?
        var appidacr: String?
        var name: String
        var oid: String
        var preferred_username: String?
        var upn: String?
        var rh: String
        var roles: [String]?
        var scp: String?
        var sub: String
        var tid: String
        var uti: String
        var ver: String

        // The time checks need the emulator's clock: `validate` does them.
        func verify(using algorithm: some JWTAlgorithm) async throws {}
    }

    struct Invalid: Error, CustomStringConvertible {
        var description: String
    }

    /// The discovery document's issuer and the JWKS it points to, as JSON text.
    func discover(tenant: String) async throws -> (issuer: String, jwks: String) {
        let discovery = try await harness.send(.GET, "\(harness.endpoints.authority)/\(tenant)/v2.0/.well-known/openid-configuration")
        #expect(discovery.status == 200)
        let issuer = try #require(discovery.json["issuer"] as? String)
        let jwksURI = try #require(discovery.json["jwks_uri"] as? String)
        let jwks = try await harness.send(.GET, jwksURI)
        #expect(jwks.status == 200)
        return (issuer, jwks.body)
    }

    func validate(_ token: String, tenant: String, audience: String) async throws -> Claims {
        let (issuer, jwks) = try await discover(tenant: tenant)
        let keys = try await JWTKeyCollection().add(jwksJSON: jwks)
        let claims = try await keys.verify(token, as: Claims.self)
        // v2.0 tokens carry the discovery document's issuer, v1.0 tokens the STS one.
        guard claims.iss.value == issuer || claims.iss.value == "https://sts.windows.net/\(tenant)/" else {
            throw Invalid(description: "issuer \(claims.iss.value) is not \(issuer)")
        }
        try claims.aud.verifyIntendedAudience(includes: audience)
        try claims.exp.verifyNotExpired(currentDate: harness.clock.now)
        try claims.nbf.verifyNotBefore(currentDate: harness.clock.now)
        return claims
    }
}

extension Harness {
    /// `POST /control/users/{oid}/token`: the staff sign-in stand-in.
    func staffToken(
        user objectID: String, resource: String, lifetimeSeconds: Int? = nil, issuedAtOffsetSeconds: Int? = nil
    ) async throws -> Reply {
        var body = [#""resource":"\#(resource)""#]
        if let lifetimeSeconds { body.append(#""lifetimeSeconds":\#(lifetimeSeconds)"#) }
        if let issuedAtOffsetSeconds { body.append(#""issuedAtOffsetSeconds":\#(issuedAtOffsetSeconds)"#) }
        return try await json(.POST, "\(endpoints.control)/control/users/\(objectID)/token", "{\(body.joined(separator: ","))}")
    }

    /// The access token of a successful `staffToken` call.
    func staffAccessToken(_ name: String, resource: String? = nil) async throws -> String {
        let oid = try #require(scenario.staffUserObjectIDs[name])
        let reply = try await staffToken(user: oid, resource: resource ?? scenario.adminAudience)
        #expect(reply.status == 200, "\(reply.body)")
        return try #require(reply.json["access_token"] as? String)
    }

    /// A JWT's header or payload segment as JSON, unverified.
    static func jwtSegment(_ token: String, _ index: Int) throws -> [String: Any] {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        let bytes = try #require(Base64URL.decode(String(parts[index])))
        return try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
    }
}
