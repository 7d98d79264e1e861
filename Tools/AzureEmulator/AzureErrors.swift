import Foundation

/// The error bodies of the emulated services, shaped as the real services send them
/// (Microsoft's REST references for Entra, IMDS, Key Vault and Graph errors; docs/emulator.md). Pure functions: unit-tested without I/O.
public enum AzureErrors {}

// MARK: - Entra (AADSTS)

/// One AADSTS failure: the code, the OAuth `error` value and the HTTP status it travels with.
public struct AADSTSFailure: Sendable, Equatable, Error {
    public var code: Int
    public var error: String
    public var status: Int
    public var message: String

    public init(code: Int, error: String, status: Int, message: String) {
        self.code = code
        self.error = error
        self.status = status
        self.message = message
    }

    /// `{"error", "error_description", "error_codes", "timestamp", "trace_id", "correlation_id", "error_uri"}`
    /// with the description in the `AADSTS<code>: <message>\r\nTrace ID: …` form of the recorded bodies.
    public func body(traceID: String, correlationID: String, at time: Date) -> JSONValue {
        let stamp = AzureErrors.entraTimestamp(time)
        let description = "AADSTS\(code): \(message)\r\nTrace ID: \(traceID)\r\nCorrelation ID: \(correlationID)\r\nTimestamp: \(stamp)"
        return .object([
            ("error", .string(error)),
            ("error_description", .string(description)),
            ("error_codes", .array([.int(Int64(code))])),
            ("timestamp", .string(stamp)),
            ("trace_id", .string(traceID)),
            ("correlation_id", .string(correlationID)),
            ("error_uri", .string("https://login.microsoftonline.com/error?code=\(code)")),
        ])
    }

    // The failures the emulated token endpoint produces. `error` and status follow WIRE.md §2.1;
    // where WIRE.md marks them UNCONFIRMED the choice is noted in docs/emulator.md.

    public static func noMatchingFIC(issuer: String, subject: String, audience: String) -> Self {
        .init(code: 70021, error: "invalid_request", status: 400,
              message: "No matching federated identity record found for presented assertion. Assertion Issuer: '\(issuer)'. Assertion Subject: '\(subject)'. Assertion Audience: '\(audience)'. https://docs.microsoft.com/en-us/azure/active-directory/develop/workload-identity-federation")
    }

    public static func subjectCaseMismatch(subject: String) -> Self {
        .init(code: 7002138, error: "invalid_client", status: 401,
              message: "No matching federated identity record found for presented assertion subject '\(subject)'. The subject matches with case-insensitive comparison, but not with case-sensitive comparison. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion. https://learn.microsoft.com/entra/workload-id/workload-identity-federation")
    }

    public static func applicationNotFound(appID: String, tenant: String) -> Self {
        .init(code: 700016, error: "unauthorized_client", status: 400,
              message: "Application with identifier '\(appID)' was not found in the directory '\(tenant)'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.")
    }

    /// The application's service principal in this tenant is disabled (`accountEnabled` false).
    /// Sources: Worklytics/psoxy#74 (`"error": "unauthorized_client"`, fixed by
    /// `az ad sp update --id … --set accountEnabled=true`), MicrosoftDocs/azure-docs#28469 (the
    /// text). The status is not shown there; 400, as 700016's `unauthorized_client` travels with.
    public static func applicationDisabled(appID: String, displayName: String) -> Self {
        .init(code: 7000112, error: "unauthorized_client", status: 400,
              message: "Application '\(appID)'(\(displayName)) is disabled.")
    }

    public static func assertionOutOfRange(now: Date, notBefore: Date?, expiry: Date?) -> Self {
        let from = AzureErrors.entraLongTimestamp(notBefore ?? Date(timeIntervalSince1970: 0))
        let to = AzureErrors.entraLongTimestamp(expiry ?? Date(timeIntervalSince1970: 0))
        return .init(code: 700024, error: "invalid_client", status: 401,
                     message: "Client assertion is not within its valid time range. Current time: \(AzureErrors.entraLongTimestamp(now)), assertion valid from \(from), expiry time of assertion \(to). Review the documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials .")
    }

    public static func tenantNotFound(_ tenant: String) -> Self {
        .init(code: 90002, error: "invalid_tenant", status: 400,
              message: "Tenant '\(tenant)' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant.")
    }

    public static let invalidSignature = Self(
        code: 700027, error: "invalid_client", status: 401,
        message: "Client assertion failed signature validation.")

    public static let malformedAssertion = Self(
        code: 50027, error: "invalid_request", status: 400,
        message: "JWT token is invalid or malformed.")

    public static func invalidScope(_ scope: String) -> Self {
        .init(code: 70011, error: "invalid_scope", status: 400,
              message: "The provided value for the input parameter 'scope' isn't valid. The scope \(scope) isn't valid.")
    }

    public static func scopeWithoutDefault(_ scope: String) -> Self {
        .init(code: 1002012, error: "invalid_scope", status: 400,
              message: "The provided value for scope \(scope) is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).")
    }

    public static func resourceNotFound(_ resource: String, tenant: String) -> Self {
        .init(code: 500011, error: "invalid_resource", status: 400,
              message: "The resource principal named \(resource) was not found in the tenant named \(tenant). This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant.")
    }

    public static let conditionalAccess = Self(
        code: 53003, error: "invalid_grant", status: 400,
        message: "Access has been blocked by Conditional Access policies. The access policy does not allow token issuance.")

    public static func missingParameter(_ name: String) -> Self {
        .init(code: 900144, error: "invalid_request", status: 400,
              message: "The request body must contain the following parameter: '\(name)'.")
    }

    public static let missingCredential = Self(
        code: 7000218, error: "invalid_client", status: 401,
        message: "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.")

    public static let invalidClientSecret = Self(
        code: 7000215, error: "invalid_client", status: 401,
        message: "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app.")

    public static func unsupportedAssertionType(_ type: String) -> Self {
        .init(code: 700023, error: "invalid_request", status: 400,
              message: "Invalid client assertion type '\(type)'. Only 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer' is supported.")
    }

    public static func unsupportedGrantType(_ grant: String) -> Self {
        .init(code: 70003, error: "unsupported_grant_type", status: 400,
              message: "The app requested an unsupported grant type '\(grant)'.")
    }

    public static let invalidRedirectURI = Self(
        code: 90102, error: "invalid_request", status: 400,
        message: "'redirect_uri' value must be a valid absolute URI.")

    public static let temporarilyUnavailable = Self(
        code: 90006, error: "temporarily_unavailable", status: 503,
        message: "The service is temporarily unavailable.")
}

extension AzureErrors {
    /// "2022-01-20 22:55:12Z", the `timestamp` form of Entra errors.
    public static func entraTimestamp(_ date: Date) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyy-MM-dd HH:mm:ss'Z'"
        return f.string(from: date)
    }

    /// "2024-12-07T12:09:18.3149355Z", the form inside the 700024 message.
    public static func entraLongTimestamp(_ date: Date) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyy-MM-dd'T'HH:mm:ss"
        return f.string(from: date) + ".0000000Z"
    }

    /// RFC 1123 date for `Date` headers.
    public static func httpDate(_ date: Date) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "GMT")
        f.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        return f.string(from: date)
    }
}

// MARK: - Key Vault

/// A Key Vault data-plane failure: `{"error":{"code","message","innererror"?}}` (common.json `KeyVaultError`).
public struct KeyVaultFailure: Sendable, Equatable, Error {
    public var status: Int
    public var code: String
    public var message: String
    public var innerCode: String?
    /// Only 401s carry the challenge.
    public var challenge: Bool

    public init(status: Int, code: String, message: String, innerCode: String? = nil, challenge: Bool = false) {
        self.status = status
        self.code = code
        self.message = message
        self.innerCode = innerCode
        self.challenge = challenge
    }

    public var body: JSONValue {
        var error: [(String, JSONValue)] = [("code", .string(code)), ("message", .string(message))]
        if let innerCode { error.append(("innererror", .object([("code", .string(innerCode))]))) }
        return .object([("error", .object(error))])
    }

    public static let missingToken = Self(
        status: 401, code: "Unauthorized", message: "AKV10000: Request is missing a Bearer or PoP token.", challenge: true)

    public static func invalidAudience(found: String) -> Self {
        .init(status: 401, code: "Unauthorized",
              message: "AKV10022: Invalid audience. Expected https://vault.azure.net, found: \(found).", challenge: true)
    }

    public static func invalidIssuer(expectedTenant: String, found: String) -> Self {
        .init(status: 401, code: "Unauthorized",
              message: "AKV10032: Invalid issuer. Expected one of https://sts.windows.net/\(expectedTenant)/, found \(found).", challenge: true)
    }

    public static let tokenExpired = Self(
        status: 401, code: "Unauthorized", message: "[TokenExpired] Error validating token: 'S2S12086'.", challenge: true)

    public static func unresolvableSigningKey(encodedHeader: String) -> Self {
        .init(status: 401, code: "Unauthorized",
              message: "AKV10046: Unable to resolve the key used for signature validation. EncodedJwtHeader: '\(encodedHeader)'", challenge: true)
    }

    public static let malformedToken = Self(
        status: 401, code: "Unauthorized", message: "AKV10005: Invalid token. Token is malformed.", challenge: true)

    public static func forbiddenByRbac(
        appID: String, objectID: String, issuer: String, action: String, resource: String, vault: String, region: String
    ) -> Self {
        let message = "Caller is not authorized to perform action on resource.\r\nIf role assignments, deny assignments or role definitions were changed recently, please observe propagation time.\r\nCaller: appid=\(appID);oid=\(objectID);iss=\(issuer)\r\nAction: '\(action)'\r\nResource: '\(resource)'\r\nAssignment: (not found)\r\nDenyAssignmentId: null\r\nDecisionReason: 'DeniedWithNoValidRBAC' \r\nVault: \(vault);location=\(region)\r\n"
        return .init(status: 403, code: "Forbidden", message: message, innerCode: "ForbiddenByRbac")
    }

    public static func operationForbidden(_ operation: String) -> Self {
        .init(status: 403, code: "Forbidden", message: "Operation \(operation) is not permitted on this key.",
              innerCode: "KeyOperationForbidden")
    }

    public static func keyDisabled(_ operation: String) -> Self {
        .init(status: 403, code: "Forbidden", message: "Operation \(operation) is not allowed on a disabled key.",
              innerCode: "KeyDisabled")
    }

    public static func keyExpired(_ operation: String) -> Self {
        .init(status: 403, code: "Forbidden", message: "Operation \(operation) is not allowed on an expired key.",
              innerCode: "KeyExpired")
    }

    public static func keyNotYetValid(_ operation: String) -> Self {
        .init(status: 403, code: "Forbidden", message: "Operation \(operation) is not allowed on a key that is not yet valid.",
              innerCode: "KeyNotYetValid")
    }

    public static func keyNotFound(_ name: String) -> Self {
        .init(status: 404, code: "KeyNotFound",
              message: "A key with (name/id) \(name) was not found in this key vault. If you recently deleted this key you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182")
    }

    public static func keyVersionNotFound(_ name: String, version: String) -> Self {
        .init(status: 404, code: "KeyNotFound",
              message: "A key with (name/id) \(name)/\(version) was not found in this key vault. If you recently deleted this key you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182")
    }

    public static let badOAEPPadding = Self(status: 400, code: "BadParameter", message: "Error occurred while decoding OAEP padding.")
    public static let badPKCS1Padding = Self(status: 400, code: "BadParameter", message: "Error occurred while decoding PKCS1 padding.")

    public static let valueNotBase64URL = Self(
        status: 400, code: "BadParameter", message: "Content of 'value' is not base64url.\r\nProperty 'value' is required.\r\n")

    public static func badParameter(_ message: String) -> Self {
        .init(status: 400, code: "BadParameter", message: message)
    }

    public static func invalidAlgorithm(_ alg: String) -> Self {
        .init(status: 400, code: "BadParameter", message: "Invalid algorithm: '\(alg)' is not valid for a key of type RSA.")
    }

    public static let missingAPIVersion = Self(
        status: 400, code: "BadParameter", message: "The request URI contains an invalid or missing 'api-version' query parameter.")

    public static func unsupportedAPIVersion(_ version: String) -> Self {
        .init(status: 400, code: "BadParameter",
              message: "The specified version (\(version)) is not recognized. Consider using the latest supported version (2025-07-01).")
    }

    public static let throttled = Self(
        status: 429, code: "Throttled",
        message: "Request was not processed because too many requests were received. Reason: VaultRequestTypeLimitReached")

    /// The vault's firewall refusing the caller's address (WIRE.md, "Firewall"): what a 403 fault answers.
    public static let firewall = Self(
        status: 403, code: "Forbidden",
        message: "Client address is not authorized and caller is not a trusted service.\r\nClient address: 127.0.0.1",
        innerCode: "ForbiddenByFirewall")

    public static func notFoundPath() -> Self {
        .init(status: 404, code: "NotFound", message: "The requested resource was not found.")
    }

    public static let methodNotAllowed = Self(
        status: 405, code: "MethodNotAllowed", message: "The requested resource does not support http method.")
}

// MARK: - IMDS

/// IMDS failure: `{"error": <enum>, "error_description": <string>}` (IdentityErrorResponse).
public struct IMDSFailure: Sendable, Equatable, Error {
    public var status: Int
    public var error: String
    public var description: String

    public init(status: Int, error: String, description: String) {
        self.status = status
        self.error = error
        self.description = description
    }

    public var body: JSONValue {
        .object([("error", .string(error)), ("error_description", .string(description))])
    }

    public static let missingMetadataHeader = Self(status: 400, error: "bad_request_102", description: "Required metadata header not specified")
    public static let forwardedRequest = Self(status: 400, error: "bad_request", description: "Request contains X-Forwarded-For header and was rejected")
    public static let missingAPIVersion = Self(status: 400, error: "invalid_request", description: "Required query variable 'api-version' is missing")
    public static func unsupportedAPIVersion(_ v: String) -> Self {
        .init(status: 400, error: "invalid_request", description: "Invalid api-version '\(v)'. Use 2018-02-01 or greater")
    }
    public static let missingResource = Self(status: 400, error: "invalid_request", description: "Required query variable 'resource' is missing")
    public static let duplicateParameter = Self(status: 400, error: "invalid_request", description: "Duplicate query parameter names are not allowed")
    public static let ambiguousSelector = Self(
        status: 400, error: "invalid_request",
        description: "Only one of client_id, object_id or msi_res_id may be specified")
    public static let identityNotFound = Self(status: 400, error: "invalid_request", description: "Identity not found")
    public static let multipleIdentities = Self(
        status: 400, error: "invalid_request",
        description: "Multiple user assigned identities exist, please specify the clientId / resourceId of the identity in the token request")
    public static let noIdentity = Self(
        status: 400, error: "invalid_request",
        description: "No managed identity is assigned to this resource")
    public static let tooManyRequests = Self(status: 429, error: "too_many_requests", description: "Too many requests")
    public static let notFound = Self(status: 404, error: "not_found", description: "Not found")
    public static let methodNotAllowed = Self(status: 405, error: "method_not_allowed", description: "Not allowed")
}

// MARK: - Microsoft Graph

/// Graph failure: `{"error":{"code","message","innerError":{"date","request-id","client-request-id"}}}`.
public struct GraphFailure: Sendable, Equatable, Error {
    public var status: Int
    public var code: String
    public var message: String

    public init(status: Int, code: String, message: String) {
        self.status = status
        self.code = code
        self.message = message
    }

    public func body(requestID: String, clientRequestID: String, at date: Date) -> JSONValue {
        let f = ISO8601DateFormatter()
        return .object([
            ("error", .object([
                ("code", .string(code)),
                ("message", .string(message)),
                ("innerError", .object([
                    ("date", .string(f.string(from: date))),
                    ("request-id", .string(requestID)),
                    ("client-request-id", .string(clientRequestID)),
                ])),
            ]))
        ])
    }

    public static func applicationNotFound(_ id: String) -> Self {
        .init(status: 404, code: "Request_ResourceNotFound",
              message: "Resource '\(id)' does not exist or one of its queried reference-property objects are not present.")
    }
    public static func credentialNotFound(_ id: String) -> Self {
        .init(status: 404, code: "Request_ResourceNotFound",
              message: "Resource '\(id)' does not exist or one of its queried reference-property objects are not present.")
    }
    public static let limitReached = Self(
        status: 400, code: "Request_BadRequest",
        message: "The maximum number of federated identity credentials (20) for this application has been reached.")
    /// The recorded answer (Azure/azure-workload-identity#434, Graph beta, 2022).
    public static func issuerSubjectExists(issuer: String, subject: String) -> Self {
        .init(status: 400, code: "InvalidFederatedIdentityCredentialValue",
              message: "The combination of issuer and subject must be unique for the application. Issuer \(issuer) and Subject: \(subject) already exist. paramName: FederatedIdentityCredential.Subject, paramValue: \(subject), objectType: Microsoft.Online.DirectoryServices.Application")
    }
    /// The caller may not manage the application's credentials (no `Application.ReadWrite.OwnedBy`
    /// or `.All` in its token, or not the application itself).
    public static let insufficientPrivileges = Self(
        status: 403, code: "Authorization_RequestDenied", message: "Insufficient privileges to complete the operation.")
    /// A `$filter` that does not parse.
    public static func invalidFilter(_ filter: String, position: Int) -> Self {
        .init(status: 400, code: "BadRequest", message: "Invalid filter clause: syntax error at position \(position) in '\(filter)'.")
    }
    /// A `$filter` on a property or with an operator Graph does not filter on for these credentials.
    public static func unsupportedFilter(property: String) -> Self {
        .init(status: 400, code: "Request_UnsupportedQuery",
              message: "Unsupported or invalid query filter clause specified for property '\(property)' of resource 'FederatedIdentityCredential'.")
    }
    public static let unsupportedQuery = Self(status: 400, code: "Request_UnsupportedQuery", message: "Unsupported Query.")
    public static func nameExists(_ name: String) -> Self {
        .init(status: 409, code: "Request_MultipleObjectsWithSameKeyValue",
              message: "FederatedIdentityCredential with name \(name) already exists.")
    }
    public static func invalidName(_ name: String) -> Self {
        .init(status: 400, code: "Request_BadRequest", message: "Federated Identity Credential name '\(name)' is invalid.")
    }
    public static let exactlyOneAudience = Self(
        status: 400, code: "Request_BadRequest", message: "Federated identity credentials must have exactly one audience.")
    public static let emptyProperties = Self(
        status: 400, code: "Request_BadRequest", message: "Federated Identity Credential from HTTP body has empty properties")
    public static func tooLong(_ field: String) -> Self {
        .init(status: 400, code: "Request_BadRequest", message: "The '\(field)' property exceeds the limit of 600 characters.")
    }
    public static let whitespaceIssuer = Self(
        status: 400, code: "Request_BadRequest", message: "The issuer must not have leading or trailing whitespace.")
    public static let malformedBody = Self(
        status: 400, code: "BadRequest", message: "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format.")
    public static let missingToken = Self(
        status: 401, code: "InvalidAuthenticationToken", message: "Access token is empty.")
    public static let invalidToken = Self(
        status: 401, code: "InvalidAuthenticationToken", message: "Access token validation failure. Invalid audience.")
    public static let expiredToken = Self(
        status: 401, code: "InvalidAuthenticationToken", message: "Lifetime validation failed, the token is expired.")
}
