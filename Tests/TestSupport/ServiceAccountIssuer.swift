import AzureEmulator
import Crypto
import CryptoExtras
import FedBrokerCore
import Foundation

/// An AKS cluster's OIDC issuer, for AKS workload identity tests: its own RSA key, the
/// projected service-account tokens it signs (RS256, audience `api://AzureADTokenExchange`,
/// subject `system:serviceaccount:NS:SA`), and its JWKS for the emulator to trust it.
public struct ServiceAccountIssuer: Sendable {
    public let issuer: String
    private let key: _RSA.Signing.PrivateKey
    private let keyID = "sa-1"

    public init() throws {
        self.issuer = "https://oidc.test.aks/\(UUID().uuidString.lowercased())/"
        self.key = try _RSA.Signing.PrivateKey(derRepresentation: RSAKeyMaterial.spareKeyDER(bits: 2048))
    }

    public static func subject(namespace: String, serviceAccount: String) -> String {
        "system:serviceaccount:\(namespace):\(serviceAccount)"
    }

    /// A projected token valid from `issuedAt` for `lifetime` seconds.
    public func token(
        subject: String, issuedAt: Date, lifetime: TimeInterval = 3600, audience: String = "api://AzureADTokenExchange"
    ) throws -> String {
        let iat = Int64(issuedAt.timeIntervalSince1970)
        let header: [String: Any] = ["alg": "RS256", "typ": "JWT", "kid": keyID]
        let claims: [String: Any] = [
            "iss": issuer, "sub": subject, "aud": [audience], "iat": iat, "nbf": iat, "exp": iat + Int64(lifetime),
        ]
        let input = try Self.segment(header) + "." + Self.segment(claims)
        let signature = try key.signature(for: Data(input.utf8), padding: .insecurePKCS1v1_5)
        let token = input + "." + Base64URL.encode(signature.rawRepresentation)
        TestLogging.ledger?.record(token: token, kind: "service-account-token")
        return token
    }

    /// The issuer's JWKS document.
    public func jwks() throws -> String {
        let p = try key.publicKey.getKeyPrimitives()
        return #"{"keys":[{"kty":"RSA","use":"sig","alg":"RS256","kid":"\#(keyID)","n":"\#(Base64URL.encode(p.modulus))","e":"\#(Base64URL.encode(p.publicExponent))"}]}"#
    }

    /// Makes the emulated Entra trust this issuer's signatures.
    public func register(with state: EmulatorState) throws {
        state.registerExternalIssuer(issuer, jwks: try jwks())
    }

    private static func segment(_ object: [String: Any]) throws -> String {
        Base64URL.encode(try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]))
    }
}
