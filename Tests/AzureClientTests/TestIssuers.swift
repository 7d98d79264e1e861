import AzureEmulator
import Crypto
import CryptoExtras
import FedBrokerCore
import Foundation
import JWTKit

/// An AKS-style OIDC issuer: signs projected service-account tokens (RS256) and publishes its JWKS.
struct AKSIssuer: Sendable {
    let issuer = "https://oidc.test.aks/\(UUID().uuidString.lowercased())/"
    let key = try! _RSA.Signing.PrivateKey(derRepresentation: RSAKeyMaterial.spareKeyDER(bits: 2048))

    struct Claims: JWTPayload {
        var iss: String
        var sub: String
        var aud: [String]
        var iat: Int64
        var nbf: Int64
        var exp: Int64
        func verify(using algorithm: some JWTAlgorithm) async throws {}
    }

    func token(subject: String, issuedAt: Int64, lifetime: Int64) async throws -> String {
        let keys = await JWTKeyCollection().add(rsa: try Insecure.RSA.PrivateKey(backing: key), digestAlgorithm: .sha256, kid: "aks-1")
        return try await keys.sign(Claims(iss: issuer, sub: subject, aud: ["api://AzureADTokenExchange"], iat: issuedAt, nbf: issuedAt, exp: issuedAt + lifetime), kid: "aks-1")
    }

    func jwks() async throws -> String {
        let p = try key.publicKey.getKeyPrimitives()
        return #"{"keys":[{"kty":"RSA","use":"sig","alg":"RS256","kid":"aks-1","n":"\#(Base64URL.encode(p.modulus))","e":"\#(Base64URL.encode(p.publicExponent))"}]}"#
    }
}

enum RSAOAEPHelper {
    /// RSA-OAEP-256 with the public half of a PKCS#1 DER private key (what a vault key holds).
    static func wrap(_ plaintext: [UInt8], derPrivateKey: Data) throws -> [UInt8] {
        let key = try _RSA.Encryption.PrivateKey(derRepresentation: derPrivateKey)
        return Array(try key.publicKey.encrypt(plaintext, padding: .PKCS1_OAEP_SHA256))
    }
}
