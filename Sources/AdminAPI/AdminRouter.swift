import AsyncHTTPClient
import AzureHTTP
import AzureIdentity
import BrokerStore
import FedBrokerCore
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import OpenAPIHummingbird
import OpenAPIRuntime

/// The admin API as a Hummingbird router: the generated routes, behind the request guard (body
/// limit, unknown routes) and the admin middleware (authentication, roles, problem+json).
///
/// With `operability`, `/readyz` answers from the assembly's readiness (checks listed) and
/// `/metrics` serves the assembly's Prometheus text; both, like `/livez`, need no token.
public enum AdminRouter {
    public static func make(
        store: any BrokerStore, environment: AzureEnvironment, configuration: AdminAPIConfiguration,
        authentication: StaffAuthentication, httpClient: HTTPClient, clock: any WallClock = SystemWallClock(),
        slotJobSubmitted: @escaping @Sendable () -> Void = {}, operability: AdminOperability? = nil, logger: Logger
    ) throws -> Router<BasicRequestContext> {
        let router = Router()
        router.add(middleware: RequestGuardMiddleware())
        let handler = AdminHandler(
            store: store, environment: environment, configuration: configuration, httpClient: httpClient, clock: clock,
            slotJobSubmitted: slotJobSubmitted, logger: logger)
        var middlewares: [any ServerMiddleware] = [AdminMiddleware(authentication: authentication, logger: logger)]
        if let operability { middlewares.append(ReadinessMiddleware(readiness: operability.readiness)) }
        try handler.registerHandlers(on: router, middlewares: middlewares)
        if let metrics = operability?.metrics {
            // Not an operation of the admin API's document: Prometheus's text format, for scrapers.
            router.get("/metrics") { _, _ in
                Response(
                    status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8", .cacheControl: "no-store"],
                    body: .init(byteBuffer: ByteBuffer(bytes: metrics())))
            }
        }
        return router
    }
}
