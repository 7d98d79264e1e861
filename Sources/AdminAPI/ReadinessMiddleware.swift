import FedBrokerCore
import HTTPTypes
import OpenAPIRuntime

/// Answers the documented `readyz` operation from the assembly's readiness instead of the
/// generated handler's store-only check: the same `Health` shape (`status`, `detail`) with the
/// checks behind the verdict added, 200 when ready and 503 otherwise.
struct ReadinessMiddleware: ServerMiddleware {
    let readiness: @Sendable () async -> HealthReport

    func intercept(
        _ request: HTTPRequest, body: HTTPBody?, metadata: ServerRequestMetadata, operationID: String,
        next: @Sendable (HTTPRequest, HTTPBody?, ServerRequestMetadata) async throws -> (HTTPResponse, HTTPBody?)
    ) async throws -> (HTTPResponse, HTTPBody?) {
        guard operationID == "readyz" else { return try await next(request, body, metadata) }
        let report = await readiness()
        var response = HTTPResponse(status: report.ready ? .ok : .serviceUnavailable)
        response.headerFields[.contentType] = "application/json"
        response.headerFields[.cacheControl] = "no-store"
        return (response, HTTPBody(report.json()))
    }
}
