import FedBrokerCore
import Foundation
import HTTPTypes
import Logging
import OpenAPIRuntime
import AdminAPIModel

/// Authenticates and authorizes every operation, and turns every error into problem+json.
///
/// It sits around the generated server, so it also catches what the generated code throws
/// (malformed JSON, an unknown field, a missing parameter) and answers those as 400 problems with
/// the same shape as everything else.
struct AdminMiddleware: ServerMiddleware {
    let authentication: StaffAuthentication
    let logger: Logger

    func intercept(
        _ request: HTTPRequest, body: HTTPBody?, metadata: ServerRequestMetadata, operationID: String,
        next: @Sendable (HTTPRequest, HTTPBody?, ServerRequestMetadata) async throws -> (HTTPResponse, HTTPBody?)
    ) async throws -> (HTTPResponse, HTTPBody?) {
        do {
            guard let requirement = AdminRequirement.byOperation[operationID] else {
                throw AdminProblem.forbidden("operation \(operationID) is not open to anyone")
            }
            if requirement == .none { return try await next(request, body, metadata) }
            let principal = try await self.authenticate(request)
            guard principal.satisfies(requirement) else {
                throw AdminProblem.forbidden("\(operationID) needs the app role \(requirement); your token does not carry it")
            }
            return try await StaffPrincipal.$current.withValue(principal) { try await next(request, body, metadata) }
        } catch {
            let problem = Self.problem(for: error)
            // Never the error itself: a ServerError describes the whole request, Authorization
            // header and body included. The cause's type and stable code are enough to act on.
            if problem.status.code >= 500 {
                logger.error(
                    "admin request failed",
                    metadata: ["fb.operation": "\(operationID)", "fb.problem": "\(problem.code)", "fb.cause": "\(Self.cause(of: error))"])
            } else if problem.status == .unauthorized || problem.status == .forbidden {
                logger.notice(
                    "admin request refused", metadata: ["fb.operation": "\(operationID)", "fb.problem": "\(problem.code)"])
            }
            return Self.response(problem, instance: request.path)
        }
    }

    private func authenticate(_ request: HTTPRequest) async throws(AdminProblem) -> StaffPrincipal {
        switch authentication {
        case .localSocket(let principal):
            return principal
        case .entra(let verifier):
            guard let value = request.headerFields[.authorization] else {
                throw .unauthenticated("send Authorization: Bearer <Entra access token for the admin API>")
            }
            let parts = value.split(separator: " ", maxSplits: 1)
            guard parts.count == 2, parts[0].lowercased() == "bearer" else {
                throw .unauthenticated("the Authorization header must be Bearer <token>")
            }
            return try await verifier.principal(bearer: String(parts[1]))
        }
    }

    /// What caused a failure, safe to log: a stable code or a type name, never a description.
    static func cause(of error: any Error) -> String {
        let underlying = (error as? ServerError)?.underlyingError ?? error
        if let broker = underlying as? BrokerError { return broker.code.rawValue }
        if let problem = underlying as? AdminProblem { return problem.code }
        return String(describing: type(of: underlying))
    }

    /// Every error as the problem it stands for. The generated server wraps what a handler or
    /// its own decoding throws in a `ServerError`: the cause inside decides.
    static func problem(for error: any Error) -> AdminProblem {
        let server = error as? ServerError
        switch server?.underlyingError ?? error {
        case let problem as AdminProblem: return problem
        case let error as BrokerError: return AdminProblem(error)
        case let error as DecodingError: return .badRequest(Self.describe(error))
        default:
            // The runtime's own refusals (a missing parameter, a wrong content type, a value that
            // does not convert) are the request's fault.
            if let server, (400..<500).contains(server.httpStatus.code) || server.operationInput == nil {
                return .badRequest(AdminProblem.bounded(server.causeDescription))
            }
            return .internalError
        }
    }

    /// A decoding error in words that name the field, never the value.
    static func describe(_ error: DecodingError) -> String {
        func path(_ context: DecodingError.Context) -> String {
            let keys = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }
            return keys.isEmpty ? "the body" : keys.joined(separator: ".")
        }
        switch error {
        case .dataCorrupted(let context):
            if context.codingPath.isEmpty { return "the body is not valid JSON" }
            return "\(path(context)): \(context.debugDescription)"
        case .keyNotFound(let key, let context):
            return "\(path(context)): missing field \(key.stringValue)"
        case .typeMismatch(_, let context), .valueNotFound(_, let context):
            return "\(path(context)): wrong type"
        @unknown default:
            return "the body does not match the schema"
        }
    }

    static func response(_ problem: AdminProblem, instance: String?) -> (HTTPResponse, HTTPBody?) {
        (problem.responseHead, HTTPBody(problem.json(instance: instance)))
    }
}
