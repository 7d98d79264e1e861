import Foundation

/// The body of Key Vault's Update Key (`PATCH /keys/{name}/{version}`, keys.json
/// `KeyUpdateParameters`): `key_ops`, `attributes` (`enabled`, `nbf`, `exp`) and `tags`, each
/// optional; what is absent (or null) stays as it is, and `tags` replaces the whole set.
/// `az keyvault key set-attributes --tags k=v` sends `{"attributes":{},"tags":{"k":"v"}}`.
struct KeyUpdateRequest: Decodable, Equatable {
    var keyOps: [String]?
    var attributes: Attributes?
    var tags: [String: String]?

    struct Attributes: Decodable, Equatable {
        var enabled: Bool?
        var nbf: Int64?
        var exp: Int64?
    }

    enum CodingKeys: String, CodingKey {
        case keyOps = "key_ops"
        case attributes, tags
    }

    static let operations: Set<String> = ["encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey", "import", "export"]

    /// Parses and checks the body (JSON types strictly: `"enabled": 1` is not a boolean);
    /// failures are Key Vault's 400 `BadParameter` naming the property.
    static func parse(_ body: String) -> Result<KeyUpdateRequest, KeyVaultFailure> {
        let request: KeyUpdateRequest
        do {
            request = try JSONDecoder().decode(KeyUpdateRequest.self, from: Data(body.utf8))
        } catch let DecodingError.typeMismatch(_, context), let DecodingError.dataCorrupted(context) where !context.codingPath.isEmpty {
            return .failure(invalidProperty(context.codingPath))
        } catch let DecodingError.valueNotFound(_, context) {
            return .failure(invalidProperty(context.codingPath))
        } catch {
            return .failure(.badParameter("The request body is missing or is not a JSON object."))
        }
        if let ops = request.keyOps, !ops.allSatisfy(operations.contains) {
            return .failure(.badParameter("Property 'key_ops' has an invalid value.\r\n"))
        }
        return .success(request)
    }

    /// "Property 'enabled' has an invalid value." for the innermost named property.
    private static func invalidProperty(_ path: [any CodingKey]) -> KeyVaultFailure {
        let name = path.last { $0.intValue == nil }?.stringValue ?? "body"
        return .badParameter("Property '\(name)' has an invalid value.\r\n")
    }
}
