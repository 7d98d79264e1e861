import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import NIOPosix

/// Request context that keeps the channel, so a fault can reset the connection and Key Vault
/// can report the peer address in `x-ms-keyvault-network-info`.
public struct EmulatorRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public let channel: any Channel

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.channel = source.channel
    }
}

/// Query string or form body, kept as an ordered list so duplicates can be detected
/// (IMDS rejects duplicate parameter names).
struct FormItems: Sendable {
    var items: [(name: String, value: String)]

    init(_ encoded: String?) {
        guard let encoded, !encoded.isEmpty else {
            items = []
            return
        }
        items = encoded.split(separator: "&", omittingEmptySubsequences: true).map { pair in
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let decode: (Substring) -> String = {
                String($0).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String($0)
            }
            return (decode(parts[0]), parts.count > 1 ? decode(parts[1]) : "")
        }
    }

    subscript(_ name: String) -> String? {
        items.first { $0.name == name }?.value
    }

    var hasDuplicateNames: Bool {
        Set(items.map(\.name)).count != items.count
    }
}

extension HTTPField.Name {
    static let msRequestID = Self("x-ms-request-id")!
    static let msClientRequestID = Self("x-ms-client-request-id")!
    static let wwwAuthenticateHeader = Self("WWW-Authenticate")!
    static let metadata = Self("Metadata")!
    static let xForwardedFor = Self("X-Forwarded-For")!
}

enum Reply {
    /// A JSON response with `Content-Type: application/json; charset=utf-8` and the given headers.
    static func json(_ status: Int, _ body: JSONValue, headers: [(String, String)] = []) -> Response {
        var fields = HTTPFields()
        fields[.contentType] = "application/json; charset=utf-8"
        for (name, value) in headers {
            if let n = HTTPField.Name(name) { fields.append(HTTPField(name: n, value: value)) }
        }
        let bytes = ByteBuffer(string: body.serialized())
        fields[.contentLength] = String(bytes.readableBytes)
        return Response(status: .init(code: status), headers: fields, body: .init(byteBuffer: bytes))
    }

    /// A non-JSON body (the HTML page a browser flow ends on).
    static func text(_ status: Int, _ body: String, contentType: String, headers: [(String, String)] = []) -> Response {
        var fields = HTTPFields()
        fields[.contentType] = contentType
        for (name, value) in headers {
            if let n = HTTPField.Name(name) { fields.append(HTTPField(name: n, value: value)) }
        }
        let bytes = ByteBuffer(string: body)
        fields[.contentLength] = String(bytes.readableBytes)
        return Response(status: .init(code: status), headers: fields, body: .init(byteBuffer: bytes))
    }

    /// A 302 to `location`, empty-bodied, as Entra ends a browser flow at the redirect URI.
    static func redirect(to location: String, headers: [(String, String)] = []) -> Response {
        empty(302, headers: headers + [("Location", location)])
    }

    /// An empty-bodied response (Graph's 204).
    static func empty(_ status: Int, headers: [(String, String)] = []) -> Response {
        var fields = HTTPFields()
        for (name, value) in headers {
            if let n = HTTPField.Name(name) { fields.append(HTTPField(name: n, value: value)) }
        }
        fields[.contentLength] = "0"
        return Response(status: .init(code: status), headers: fields)
    }
}

extension Request {
    /// Reads the whole body (up to 1 MiB, more than any Azure request here needs).
    func bodyString() async throws -> String {
        var body = try await self.body.collect(upTo: 1 << 20)
        return body.readString(length: body.readableBytes) ?? ""
    }

    func header(_ name: String) -> String? {
        guard let n = HTTPField.Name(name) else { return nil }
        return self.headers[n]
    }

    /// The bearer token in `Authorization`, if there is one.
    var bearerToken: String? {
        guard let value = self.headers[.authorization] else { return nil }
        let parts = value.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
        let token = parts[1].trimmingCharacters(in: .whitespaces)
        return token.isEmpty ? nil : token
    }
}

/// Thrown after a fault reset a connection: nothing more is written.
struct ConnectionResetByFault: Error {}

extension Channel {
    /// Closes with SO_LINGER 0, so the peer sees a TCP reset rather than an orderly close.
    func resetConnection() async {
        if let provider = self as? any SocketOptionProvider {
            try? await provider.setSoLinger(linger(l_onoff: 1, l_linger: 0)).get()
        }
        try? await self.close(mode: .all).get()
    }
}

func newGUID() -> String { UUID().uuidString.lowercased() }
