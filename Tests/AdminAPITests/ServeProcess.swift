import AdminClient
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOSSL
import OpenAPIAsyncHTTPClient
import Testing
import FedBrokerTestSupport

extension ServeProcess {
    var adminURL: String { "http://127.0.0.1:\(adminPort)" }

    /// The admin API as `token`'s staff member.
    func admin(token: String, http: HTTPClient) -> Client {
        Client(
            serverURL: URL(string: adminURL)!, transport: AsyncHTTPClientTransport(configuration: .init(client: http)),
            middlewares: [BearerTokenMiddleware(token: token)])
    }
}
