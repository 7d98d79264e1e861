import AsyncHTTPClient
import AzureIdentity
import BrokerStore
import FedBrokerCore
import Foundation
import Hummingbird
import Logging
import OpenAPIHummingbird
import OpenAPIRuntime

/// The admin API as a Hummingbird router: the generated routes, behind the request guard (body
/// limit, unknown routes) and the admin middleware (authentication, roles, problem+json).
public enum AdminRouter {
    public static func make(
        store: any BrokerStore, environment: AzureEnvironment, configuration: AdminAPIConfiguration,
        authentication: StaffAuthentication, httpClient: HTTPClient, clock: any WallClock = SystemWallClock(),
        logger: Logger
    ) throws -> Router<BasicRequestContext> {
        let router = Router()
        router.add(middleware: RequestGuardMiddleware())
        let handler = AdminHandler(
            store: store, environment: environment, configuration: configuration, httpClient: httpClient, clock: clock,
            logger: logger)
        try handler.registerHandlers(
            on: router, middlewares: [AdminMiddleware(authentication: authentication, logger: logger)])
        return router
    }
}
