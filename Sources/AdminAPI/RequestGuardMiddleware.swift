import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import OpenAPIRuntime
import AdminAPIModel

/// What is checked before the generated server sees a request: the body's size (collected up to
/// the limit, so an oversized body is refused with 413 before anything parses it), and routes no
/// operation serves (404 problem+json, the same shape as every other error).
struct RequestGuardMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ input: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var request = input
        if let length = request.headers[.contentLength].flatMap(Int.init), length > AdminAPIConfiguration.maximumBodyBytes {
            return Self.response(.bodyTooLarge, path: request.uri.path)
        }
        do {
            _ = try await request.collectBody(upTo: AdminAPIConfiguration.maximumBodyBytes)
        } catch {
            return Self.response(.bodyTooLarge, path: request.uri.path)
        }
        do {
            return try await next(request, context)
        } catch let error as HTTPError where error.status == .notFound {
            return Self.response(.notFound("no such route"), path: request.uri.path)
        } catch let error as HTTPError where error.status == .methodNotAllowed {
            return Self.response(
                AdminProblem(status: .methodNotAllowed, code: "method_not_allowed", title: "Method not allowed", detail: "this route does not take \(request.method)"),
                path: request.uri.path)
        }
    }

    static func response(_ problem: AdminProblem, path: String) -> Response {
        Response(
            status: problem.status, headers: problem.responseHead.headerFields,
            body: .init(byteBuffer: ByteBuffer(bytes: problem.json(instance: path))))
    }
}
