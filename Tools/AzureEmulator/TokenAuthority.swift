import Crypto
import CryptoExtras
import FedBrokerCore
import Foundation
import JWTKit

/// The emulated cloud's token signer: one RS256 key, as Entra publishes one key set for all
/// tenants. It signs managed-identity tokens (IMDS) and access tokens (the token endpoint), and
/// verifies both when they come back (the token endpoint, Key Vault, Graph).
final class TokenAuthority: Sendable {
    let keyID: String
    let privateKeyDER: Data
    let modulus: String
    let exponent: String
    private let keys: JWTKeyCollection
    /// Sees every token signed, and (through `EmulatorState`) every key value Key Vault handles.
    let observer: (@Sendable (IssuedSecret) -> Void)?

    init(privateKeyDER: Data?, observer: (@Sendable (IssuedSecret) -> Void)? = nil) async throws {
        self.observer = observer
        let key: _RSA.Signing.PrivateKey
        if let privateKeyDER {
            key = try _RSA.Signing.PrivateKey(derRepresentation: privateKeyDER)
        } else {
            // Pooled in tests like the vault keys (`RSAKeyMaterial.reuse`): every emulator a test
            // starts needs a signing key, and generating each one made RSA generation most of the
            // test process's CPU in its first 45 s (`perf record` on `swift test`).
            key = try _RSA.Signing.PrivateKey(derRepresentation: RSAKeyMaterial.privateKeyDER(bits: 2048))
        }
        self.privateKeyDER = key.derRepresentation
        let primitives = try key.publicKey.getKeyPrimitives()
        self.modulus = Base64URL.encode(primitives.modulus)
        self.exponent = Base64URL.encode(primitives.publicExponent)
        // Entra's kid is the base64url SHA-1 thumbprint of the signing certificate; the SHA-1 of
        // the public key stands in for it (same length and alphabet).
        self.keyID = Base64URL.encode(Insecure.SHA1.hash(data: key.publicKey.derRepresentation))
        self.keys = await JWTKeyCollection().add(
            rsa: try Insecure.RSA.PrivateKey(backing: key), digestAlgorithm: .sha256, kid: JWKIdentifier(string: self.keyID))
    }

    /// `{"keys":[…]}` as /discovery/v2.0/keys serves it.
    func jwks(issuer: String?) -> JSONValue {
        var key: [(String, JSONValue)] = [
            ("kty", "RSA"), ("use", "sig"), ("kid", .string(keyID)), ("x5t", .string(keyID)),
            ("n", .string(modulus)), ("e", .string(exponent)),
        ]
        if let issuer { key.append(("issuer", .string(issuer))) }
        return .object([("keys", .array([.object(key)]))])
    }

    /// Signs with the one key (`kid` in the header). `thumbprint` adds `x5t`, which v1.0
    /// tokens carry and v2.0 access tokens do not.
    func sign(_ claims: some JWTPayload, thumbprint: Bool = true) async throws -> String {
        var header = JWTHeader()
        header.typ = "JWT"
        if thumbprint { header.x5t = keyID }
        let token = try await keys.sign(claims, kid: JWKIdentifier(string: keyID), header: header)
        observer?(.token(token))
        return token
    }

    /// Checks the signature only; the caller checks claims against its own clock and rules.
    func verify<Claims: JWTPayload>(_ token: String, as: Claims.Type) async throws -> Claims {
        try await keys.verify(token, as: Claims.self)
    }
}

/// What every JWT-consuming endpoint needs before trusting a token: its header and claims,
/// read without verification so errors can name what was presented.
struct UnverifiedJWT: Sendable {
    var encodedHeader: String
    var keyID: String?
    var algorithm: String?
    var claims: PresentedClaims

    init?(_ token: String) {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3,
            let headerBytes = Base64URL.decode(String(parts[0])),
            let payloadBytes = Base64URL.decode(String(parts[1])),
            let header = try? JSONSerialization.jsonObject(with: Data(headerBytes)) as? [String: Any],
            let claims = try? JSONDecoder().decode(PresentedClaims.self, from: Data(payloadBytes))
        else { return nil }
        self.encodedHeader = String(parts[0])
        self.keyID = header["kid"] as? String
        self.algorithm = header["alg"] as? String
        self.claims = claims
    }
}

/// The claims the emulator reads from any presented token. `aud` may be a string or an array.
struct PresentedClaims: JWTPayload {
    var iss: String?
    var sub: String?
    var aud: [String]
    var exp: Int64?
    var nbf: Int64?
    var tid: String?
    var oid: String?
    var appid: String?
    /// The client of a v2.0 token (v1.0 tokens name it in `appid`).
    var azp: String?
    /// App roles (for Graph: the application permissions granted to the client).
    var roles: [String]

    enum CodingKeys: String, CodingKey { case iss, sub, aud, exp, nbf, tid, oid, appid, azp, roles }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        iss = try c.decodeIfPresent(String.self, forKey: .iss)
        sub = try c.decodeIfPresent(String.self, forKey: .sub)
        if let one = try? c.decode(String.self, forKey: .aud) {
            aud = [one]
        } else {
            aud = (try? c.decode([String].self, forKey: .aud)) ?? []
        }
        exp = Self.number(c, .exp)
        nbf = Self.number(c, .nbf)
        tid = try c.decodeIfPresent(String.self, forKey: .tid)
        oid = try c.decodeIfPresent(String.self, forKey: .oid)
        appid = try c.decodeIfPresent(String.self, forKey: .appid)
        azp = try c.decodeIfPresent(String.self, forKey: .azp)
        roles = (try? c.decodeIfPresent([String].self, forKey: .roles)) ?? []
    }

    private static func number(_ c: KeyedDecodingContainer<CodingKeys>, _ key: CodingKeys) -> Int64? {
        if let i = try? c.decode(Int64.self, forKey: key) { return i }
        if let d = try? c.decode(Double.self, forKey: key) { return Int64(d) }
        return nil
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encodeIfPresent(iss, forKey: .iss)
        try c.encodeIfPresent(sub, forKey: .sub)
        try c.encode(aud, forKey: .aud)
        try c.encodeIfPresent(exp, forKey: .exp)
        try c.encodeIfPresent(nbf, forKey: .nbf)
    }

    // Time checks are the endpoint's, against the injected clock.
    func verify(using algorithm: some JWTAlgorithm) async throws {}
}

/// Claims of a managed-identity token from IMDS (v2 issuer, as WIRE.md §3.2 prescribes).
struct ManagedIdentityClaims: JWTPayload {
    var aud: String
    var iss: String
    var iat: Int64
    var nbf: Int64
    var exp: Int64
    var appid: String
    var azp: String
    var idtyp = "app"
    var oid: String
    var sub: String
    var tid: String
    var uti: String
    var ver = "2.0"
    var xms_mirid: String

    func verify(using algorithm: some JWTAlgorithm) async throws {}
}

/// Claims of an access token from the token endpoint (v1 issuer `https://sts.windows.net/{tid}/`,
/// which is what Key Vault tokens carry).
struct AccessTokenClaims: JWTPayload {
    var aud: String
    var iss: String
    var iat: Int64
    var nbf: Int64
    var exp: Int64
    var aio: String
    var appid: String
    var appidacr = "2"
    var idp: String
    var idtyp = "app"
    var oid: String
    var rh: String
    var sub: String
    var tid: String
    var uti: String
    var ver = "1.0"
    /// Application permissions granted to the client on the resource (Graph's, in the
    /// application's home tenant); absent when there are none, as in Entra.
    var roles: [String]? = nil

    func verify(using algorithm: some JWTAlgorithm) async throws {}
}

/// Checks a token presented to an external issuer's keys (an AKS OIDC issuer, say).
func verifyWithJWKS(_ token: String, jwks: String) async -> Bool {
    do {
        let keys = try await JWTKeyCollection().add(jwksJSON: jwks)
        _ = try await keys.verify(token, as: PresentedClaims.self)
        return true
    } catch {
        return false
    }
}
