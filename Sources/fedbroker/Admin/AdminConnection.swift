import AdminAPIModel
import AdminClient
import ArgumentParser
import AsyncHTTPClient
import FedBrokerCore
import Foundation
import HTTPTypes
import NIOCore
import NIOSSL
import OpenAPIAsyncHTTPClient
import OpenAPIRuntime

/// How the staff commands reach the admin API: `--admin-url` with a bearer token from a file or
/// the environment, or the local Unix socket.
struct AdminOptions: ParsableArguments {
    @Option(name: .long, help: "The admin API's base URL (env FEDBROKER_ADMIN_URL), e.g. https://fedbroker.internal:8443.")
    var adminURL: String?

    @Option(name: .long, help: "File holding a staff access token (env FEDBROKER_ADMIN_TOKEN_FILE; or the token itself in FEDBROKER_ADMIN_TOKEN).")
    var tokenFile: String?

    @Option(name: .long, help: "The admin API's Unix socket instead of a URL and token (env FEDBROKER_ADMIN_SOCKET).")
    var adminSocket: String?

    @Option(name: .long, help: "PEM certificates to trust for the admin API besides the system's (env FEDBROKER_ADMIN_CA_BUNDLE).")
    var caBundle: String?

    @Flag(name: .long, help: "Print JSON (the API's own documents) instead of tables.")
    var json = false
}

/// The CLI's exit codes (docs/onboarding.md lists them).
enum AdminExit {
    static let validationFailed: Int32 = 1
    static let conflict: Int32 = 2
    static let notFound: Int32 = 3
    static let notAuthorized: Int32 = 4
    static let unavailable: Int32 = 5
    static let aborted: Int32 = 6
    static let usage: Int32 = 64

    static func code(forStatus status: Int) -> Int32 {
        switch status {
        case 404: notFound
        case 401, 403: notAuthorized
        case 409, 412, 428: conflict
        case 400, 413, 415, 422: usage
        default: unavailable
        }
    }
}

/// An open connection to the admin API: the generated client and what must be shut down.
struct AdminConnection {
    let client: Client
    let http: HTTPClient
    let options: AdminOptions

    static func open(_ options: AdminOptions, environment allVariables: [String: String] = ProcessInfo.processInfo.environment) throws -> AdminConnection {
        // A variable set to the empty string counts as unset.
        let environment = allVariables.filter { !$0.value.isEmpty }
        var tls = TLSConfiguration.makeClientConfiguration()
        if let bundle = options.caBundle ?? environment["FEDBROKER_ADMIN_CA_BUNDLE"] {
            tls.additionalTrustRoots = [.file(bundle)]
        }
        var configuration = HTTPClient.Configuration(tlsConfiguration: tls)
        configuration.timeout = .init(connect: .seconds(10), read: .seconds(120))
        let serverURL: URL
        var middlewares: [any ClientMiddleware] = []
        if let socket = options.adminSocket ?? environment["FEDBROKER_ADMIN_SOCKET"] {
            guard let encoded = socket.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(["-", ".", "_"])),
                let url = URL(string: "http+unix://\(encoded)")
            else { throw AdminCLIError(AdminExit.usage, "--admin-socket is not a usable path") }
            serverURL = url
        } else {
            guard let raw = options.adminURL ?? environment["FEDBROKER_ADMIN_URL"], let url = URL(string: raw), url.scheme != nil else {
                throw AdminCLIError(AdminExit.usage, "give --admin-url (or FEDBROKER_ADMIN_URL), or --admin-socket")
            }
            // The staff token is a bearer credential: it goes over TLS, or in the clear only to this
            // machine (the server refuses plaintext off loopback too, but by then the token was sent).
            switch url.scheme?.lowercased() {
            case "https": break
            // The names the server accepts a plaintext listener on (`LoopbackHost`), bracketed or not.
            case "http" where url.host.map({ LoopbackHost.contains($0.lowercased().trimmingCharacters(in: ["[", "]"])) }) == true:
                break
            default:
                throw AdminCLIError(
                    AdminExit.usage,
                    "--admin-url must be https:// (http:// only to 127.0.0.1, ::1 or localhost): the staff token would cross the network in the clear")
            }
            serverURL = url
            let token: String
            if let file = options.tokenFile ?? environment["FEDBROKER_ADMIN_TOKEN_FILE"] {
                guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
                    throw AdminCLIError(AdminExit.usage, "cannot read the token file \(file)")
                }
                token = text.trimmingCharacters(in: .whitespacesAndNewlines)
            } else if let value = environment["FEDBROKER_ADMIN_TOKEN"] {
                token = value.trimmingCharacters(in: .whitespacesAndNewlines)
            } else {
                throw AdminCLIError(
                    AdminExit.usage,
                    "no staff token: give --token-file, FEDBROKER_ADMIN_TOKEN_FILE or FEDBROKER_ADMIN_TOKEN (az account get-access-token --resource api://fedbroker-admin --query accessToken -o tsv)")
            }
            middlewares.append(BearerTokenMiddleware(token: token))
        }
        // Made only once every setting checked out: a client must be shut down, so none is made
        // for a command that stops at a usage error.
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        let transport = AsyncHTTPClientTransport(configuration: .init(client: http, timeout: .seconds(120)))
        return AdminConnection(
            client: Client(serverURL: serverURL, transport: transport, middlewares: middlewares), http: http, options: options)
    }

    /// Runs `body` with a connection, always shutting the HTTP client down, and turns failures
    /// into a message on stderr and the documented exit code.
    static func with(_ options: AdminOptions, _ body: (AdminConnection) async throws -> Void) async throws {
        let connection: AdminConnection
        do {
            connection = try open(options)
        } catch let error as AdminCLIError {
            throw error.exit()
        }
        do {
            try await body(connection)
            try await connection.http.shutdown()
        } catch {
            try? await connection.http.shutdown()
            if let exit = error as? ExitCode { throw exit }
            if let error = error as? AdminCLIError { throw error.exit() }
            if let error = error as? ClientError {
                throw AdminCLIError(AdminExit.unavailable, "cannot reach the admin API: \(error.underlyingError)").exit()
            }
            throw AdminCLIError(AdminExit.unavailable, "\(error)").exit()
        }
    }

    /// An answer that is not the expected one: print the problem, exit with its code.
    func fail(_ statusCode: Int, _ problem: Components.Responses.Problem?) -> AdminCLIError {
        let document = problem.flatMap { try? $0.body.applicationProblemJson }
        if options.json, let document, let data = try? JSONEncoder.pretty.encode(document) {
            FileHandle.standardOutput.write(data + Data("\n".utf8))
        }
        let text = document.map { "\($0.title) (\($0.code ?? "\(statusCode)")): \($0.detail ?? "")" } ?? "the admin API answered \(statusCode)"
        return AdminCLIError(AdminExit.code(forStatus: statusCode), text)
    }

    /// Prints a document as JSON (`--json`).
    func printJSON(_ value: some Encodable) throws {
        FileHandle.standardOutput.write(try JSONEncoder.pretty.encode(value) + Data("\n".utf8))
    }
}

struct AdminCLIError: Error {
    let code: Int32
    let message: String
    init(_ code: Int32, _ message: String) {
        self.code = code
        self.message = message
    }

    func exit() -> ExitCode {
        FileHandle.standardError.write(Data("fedbroker: \(message)\n".utf8))
        return ExitCode(code)
    }
}

extension JSONEncoder {
    static var pretty: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        return encoder
    }
}

/// Plain aligned columns for terminal output.
enum Table {
    static func render(_ header: [String], _ rows: [[String]]) -> String {
        let all = [header] + rows
        let widths = header.indices.map { column in all.map { $0[column].count }.max() ?? 0 }
        return all.map { row in
            row.enumerated().map { index, cell in
                index == row.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }.joined(separator: "\n")
    }
}
