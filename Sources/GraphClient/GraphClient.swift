import AsyncHTTPClient
import AzureHTTP
import FedBrokerCore
import Foundation
import Logging
import NIOCore
import NIOHTTP1

/// The ISV application's federated identity credentials through Microsoft Graph v1.0: list
/// (optionally filtered), get by name, create and delete. This is how SRE jobs add and retire
/// FIC slots; it is never on the wrap/unwrap path.
///
/// Tokens come from the caller, per attempt: the broker obtains them as the application itself,
/// in its home (ISV) tenant, through an active slot (`CrossTenantTokenProvider.token(tenantID:
/// source:resource:deadline:)` with `GraphClient.resource`). The application needs Graph's
/// `Application.ReadWrite.OwnedBy` permission (or `Application.ReadWrite.All`).
///
/// Every call: ids and names checked before they go into a URL, every path segment and query
/// value percent-encoded, a fresh `client-request-id` (kept across retries), retries of 429,
/// 503, 504 and transport failures honouring `Retry-After` (clamped) within the caller's
/// deadline, each attempt bounded, bodies bounded (`AzureHTTP.maximumBody`). Failures are
/// `GraphError`s; what `token` throws is passed through unchanged.
public struct GraphClient: Sendable {
    public struct Configuration: Sendable {
        public var backoff = Backoff(initial: 1, maximum: 16, maxRetries: 6)
        /// The longest one attempt may take, so a hung connection leaves time to retry.
        public var attemptTimeout: Double = 15
        /// The longest wait a `Retry-After` may impose; Graph asks for seconds, never minutes,
        /// and a larger value is treated as this one.
        public var maximumRetryAfter: Double = 60
        public init() {}
    }

    /// A Graph access token, obtained within `deadline`.
    public typealias TokenProvider = @Sendable (_ deadline: Date) async throws -> String

    /// The token resource (scope without `/.default`) in Azure's global cloud. Not derived from
    /// the Graph URL: the emulator and proxies serve Graph at other addresses.
    public static let resource = "https://graph.microsoft.com"

    /// `https://graph.microsoft.com` on Azure (no trailing slash).
    public let graphURL: String
    let httpClient: HTTPClient
    let clock: any WallClock
    let configuration: Configuration
    let logger: Logger

    public init(
        graphURL: String = GraphClient.resource, httpClient: HTTPClient, clock: any WallClock = SystemWallClock(),
        configuration: Configuration = Configuration(), logger: Logger = Logger(label: "fedbroker.graph")
    ) {
        self.graphURL = AzureHTTP.trimmingSlash(graphURL)
        self.httpClient = httpClient
        self.clock = clock
        self.configuration = configuration
        self.logger = logger
    }

    // MARK: Operations

    /// The application's credentials, all of them (at most 20, one page) or those `filter` matches.
    public func listFederatedIdentityCredentials(
        of application: GraphApplication, filter: FederatedIdentityCredentialFilter? = nil, token: @escaping TokenProvider,
        deadline: Date
    ) async throws -> [FederatedIdentityCredential] {
        let clientRequestID = AzureHTTP.newClientRequestID()
        try filter?.validate(clientRequestID: clientRequestID)
        let path = try application.pathSegment(clientRequestID: clientRequestID) + "/federatedIdentityCredentials"
        let query = filter?.expression.map { "$filter=" + AzureHTTP.percentEncoded($0) }
        let response = try await perform(
            .GET, "list", path: path, query: query, body: nil, token: token, deadline: deadline, clientRequestID: clientRequestID)
        guard let values = response.json?["value"] as? [[String: Any]] else {
            throw Self.malformed(response, "no value array", clientRequestID)
        }
        return try values.map { json throws(GraphError) in
            guard let credential = FederatedIdentityCredential(json: json) else {
                throw Self.malformed(response, "a listed credential lacks id, name, issuer, subject or audiences", clientRequestID)
            }
            return credential
        }
    }

    /// One credential by its name (`federatedIdentityCredentials(name='…')`).
    /// - Throws: `GraphError` `.notFound` when the application has no credential of that name.
    public func federatedIdentityCredential(
        named name: String, of application: GraphApplication, token: @escaping TokenProvider, deadline: Date
    ) async throws -> FederatedIdentityCredential {
        let clientRequestID = AzureHTTP.newClientRequestID()
        let path = try credentialPath(name, of: application, clientRequestID: clientRequestID)
        let response = try await perform(
            .GET, "get", path: path, query: nil, body: nil, token: token, deadline: deadline, clientRequestID: clientRequestID)
        return try Self.credential(from: response, clientRequestID: clientRequestID)
    }

    /// Creates a credential (`POST …/federatedIdentityCredentials`, 201).
    ///
    /// A create whose answer was lost is retried; if the retry then meets `nameConflict` or
    /// `duplicateIssuerSubject`, the credential of that name is read back and, when it is the one
    /// asked for (same issuer, subject and audiences), returned: the first attempt succeeded.
    /// - Throws: `GraphError`: `.credentialLimitReached` (20 already), `.nameConflict`,
    ///   `.duplicateIssuerSubject`, `.insufficientPrivileges`, `.invalidArgument` (the rules in
    ///   `NewFederatedIdentityCredential`), …
    public func createFederatedIdentityCredential(
        _ credential: NewFederatedIdentityCredential, in application: GraphApplication, token: @escaping TokenProvider,
        deadline: Date
    ) async throws -> FederatedIdentityCredential {
        let clientRequestID = AzureHTTP.newClientRequestID()
        try credential.validate(clientRequestID: clientRequestID)
        let path = try application.pathSegment(clientRequestID: clientRequestID) + "/federatedIdentityCredentials"
        var attempts = 0
        do {
            let response = try await perform(
                .POST, "create", path: path, query: nil, body: credential.jsonBody, token: token, deadline: deadline,
                clientRequestID: clientRequestID, attempts: &attempts)
            return try Self.credential(from: response, clientRequestID: clientRequestID)
        } catch let error as GraphError where attempts > 1 && (error.kind == .nameConflict || error.kind == .duplicateIssuerSubject) {
            guard
                let existing = try? await federatedIdentityCredential(
                    named: credential.name, of: application, token: token, deadline: deadline),
                existing.issuer == credential.issuer, existing.subject == credential.subject, existing.audiences == credential.audiences
            else { throw error }
            return existing
        }
    }

    /// Deletes a credential by name (204).
    /// - Throws: `GraphError` `.notFound` when it does not exist: a caller retiring a slot treats
    ///   that as done (an earlier attempt, or someone else, deleted it).
    public func deleteFederatedIdentityCredential(
        named name: String, of application: GraphApplication, token: @escaping TokenProvider, deadline: Date
    ) async throws {
        let clientRequestID = AzureHTTP.newClientRequestID()
        let path = try credentialPath(name, of: application, clientRequestID: clientRequestID)
        _ = try await perform(
            .DELETE, "delete", path: path, query: nil, body: nil, token: token, deadline: deadline, clientRequestID: clientRequestID)
    }

    // MARK: The request loop

    private func credentialPath(_ name: String, of application: GraphApplication, clientRequestID: String) throws(GraphError) -> String {
        guard NewFederatedIdentityCredential.isValidName(name) else {
            throw .invalidArgument("a credential name is 3-120 letters, digits, '-' or '_', starting with a letter or digit", clientRequestID)
        }
        return try application.pathSegment(clientRequestID: clientRequestID)
            + "/federatedIdentityCredentials(name=\(ODataLiteral.pathKey(name)))"
    }

    private func perform(
        _ method: HTTPMethod, _ operation: String, path: String, query: String?, body: String?, token: @escaping TokenProvider,
        deadline: Date, clientRequestID: String
    ) async throws -> AzureHTTP.Response {
        var attempts = 0
        return try await perform(
            method, operation, path: path, query: query, body: body, token: token, deadline: deadline, clientRequestID: clientRequestID,
            attempts: &attempts)
    }

    /// One call: attempts until a 2xx, a failure that is not retryable, or the deadline.
    private func perform(
        _ method: HTTPMethod, _ operation: String, path: String, query: String?, body: String?, token: @escaping TokenProvider,
        deadline: Date, clientRequestID: String, attempts: inout Int
    ) async throws -> AzureHTTP.Response {
        guard let url = URL(string: graphURL), url.scheme?.lowercased() == "https", let host = url.host, !host.isEmpty else {
            throw GraphError.invalidArgument("the Graph URL is not an https URL: no token is sent to it", clientRequestID)
        }
        let target = "\(graphURL)/v1.0/\(path)" + (query.map { "?\($0)" } ?? "")
        do {
            return try await retrying(
                deadline: deadline, clock: clock, backoff: configuration.backoff, isRetryable: { ($0 as? GraphError)?.isRetryable ?? false }
            ) { () async throws -> AzureHTTP.Response in
                attempts += 1
                let bearer = try await token(deadline)
                var request = HTTPClientRequest(url: target)
                request.method = method
                request.headers.add(name: "Authorization", value: "Bearer \(bearer)")
                request.headers.add(name: "client-request-id", value: clientRequestID)
                request.headers.add(name: "return-client-request-id", value: "true")
                request.headers.add(name: "Accept", value: "application/json")
                if let body {
                    request.headers.add(name: "Content-Type", value: "application/json")
                    request.body = .bytes(ByteBuffer(string: body))
                }
                let response: AzureHTTP.Response
                do {
                    response = try await AzureHTTP.send(
                        request, with: httpClient, deadline: deadline, clock: clock, attemptTimeout: configuration.attemptTimeout)
                } catch let failure as TransportFailure {
                    throw GraphError(kind: .transport(failure), clientRequestID: clientRequestID)
                }
                guard (200..<300).contains(response.status) else {
                    throw GraphError(
                        response: response, clientRequestID: clientRequestID, now: clock.now,
                        maximumRetryAfter: configuration.maximumRetryAfter)
                }
                return response
            }
        } catch let error as GraphError {
            logger.debug(
                "graph call failed",
                metadata: [
                    "fb.graph.operation": "\(operation)", "fb.graph.error": "\(error.code)",
                    "fb.graph.status": "\(error.httpStatus.map(String.init) ?? "none")", "fb.graph.code": "\(error.graphCode ?? "none")",
                    "fb.graph.request_id": "\(error.requestID ?? "none")", "fb.graph.client_request_id": "\(clientRequestID)",
                    "fb.graph.attempts": "\(attempts)",
                ])
            throw error
        }
    }

    private static func credential(from response: AzureHTTP.Response, clientRequestID: String) throws(GraphError) -> FederatedIdentityCredential {
        guard let json = response.json, let credential = FederatedIdentityCredential(json: json) else {
            throw malformed(response, "the credential lacks id, name, issuer, subject or audiences", clientRequestID)
        }
        return credential
    }

    private static func malformed(_ response: AzureHTTP.Response, _ why: String, _ clientRequestID: String) -> GraphError {
        GraphError(
            kind: .malformedResponse, httpStatus: response.status, graphMessage: why, requestID: response.headers.first(name: "request-id"),
            clientRequestID: clientRequestID)
    }
}
