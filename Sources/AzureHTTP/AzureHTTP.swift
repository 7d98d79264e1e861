import AsyncHTTPClient
import AzureWire
import FedBrokerCore
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// One HTTP exchange with an Azure endpoint under a deadline, shared by the identity, Key Vault
/// and Graph clients. Transport failures come back as `TransportFailure`, so callers decide
/// retries on kinds, never on error strings.
package enum AzureHTTP {
    package struct Response: Sendable {
        package var status: Int
        package var headers: HTTPHeaders
        package var body: ByteBuffer

        package var bodyString: String { String(buffer: body) }
        /// The body's bytes, for the parsers in AzureWire.
        package var data: Data { Data(body.readableBytesView) }
        /// The body as a JSON object, within AzureWire's bounds (size, nesting).
        package var json: [String: Any]? { AzureJSON.object(data) }
    }

    /// At most 1 MiB of body: Azure's answers here are a few KiB.
    package static let maximumBody = AzureWireLimits.maximumBody

    /// - Parameter attemptTimeout: the longest this one attempt may take (a hung server must leave
    ///   time for a retry); the caller's deadline bounds it too.
    package static func send(
        _ request: HTTPClientRequest, with client: HTTPClient, deadline: Date, clock: any WallClock, attemptTimeout: Double? = nil
    ) async throws -> Response {
        let remaining = clock.remaining(until: deadline)
        guard remaining > 0 else { throw TransportFailure.deadlineExceeded }
        let budget = min(remaining, attemptTimeout ?? remaining)
        let nioDeadline = NIODeadline.now() + .milliseconds(Int64((budget * 1000).rounded(.up)))
        do {
            let response = try await client.execute(request, deadline: nioDeadline)
            let body = try await response.body.collect(upTo: maximumBody)
            return Response(status: Int(response.status.code), headers: response.headers, body: body)
        } catch let error as HTTPClientError {
            switch error {
            case .deadlineExceeded, .readTimeout, .writeTimeout: throw TransportFailure.deadlineExceeded
            case .connectTimeout, .tlsHandshakeTimeout, .getConnectionFromPoolTimeout:
                throw TransportFailure.connectionFailed("timed out connecting")
            case .remoteConnectionClosed: throw TransportFailure.connectionFailed("the server closed the connection")
            case .cancelled: throw CancellationError()
            case .invalidURL, .emptyHost, .emptyScheme, .missingSocketPath:
                throw TransportFailure.invalidRequest(String(describing: error))
            default: throw TransportFailure.connectionFailed(String(describing: error))
            }
        } catch let error as NIOSSLError {
            throw TransportFailure.tls(String(describing: error))
        } catch let error as BoringSSLError {
            throw TransportFailure.tls(String(describing: error))
        } catch let error as IOError {
            throw TransportFailure.connectionFailed(error.description)
        } catch let error as NIOConnectionError {
            throw TransportFailure.connectionFailed("cannot connect to \(error.host):\(error.port)")
        } catch let error as ChannelError {
            throw TransportFailure.connectionFailed(String(describing: error))
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            // An oversized or unparsable answer, or anything else NIO raises: still a transport failure.
            throw TransportFailure.connectionFailed(String(describing: error))
        }
    }

    /// A finite number Azure may send as a JSON number or as a decimal string (IMDS sends strings).
    package static func number(_ value: Any?) -> Double? { AzureJSON.number(value) }

    /// A base URL without its trailing slash.
    package static func trimmingSlash(_ url: String) -> String {
        url.hasSuffix("/") ? String(url.dropLast()) : url
    }

    /// A request id for `x-ms-client-request-id`: returned to the caller for its audit trail.
    package static func newClientRequestID() -> String { UUID.randomLowercaseText() }

    /// RFC 3986 unreserved characters only (`isUnreserved`): everything else in a path segment or
    /// a query value is percent-encoded, so a value can never add a segment, a parameter or a
    /// fragment.
    package static let unreserved = CharacterSet(charactersIn: String(decoding: (0...127).filter(isUnreserved), as: UTF8.self))

    /// `value` percent-encoded for use as one path segment or one query value.
    package static func percentEncoded(_ value: String) -> String {
        // Key names, versions and operations are unreserved already (every vault call's path):
        // returned as they are, without Foundation's encoder (about 3 µs a segment on Linux).
        if value.utf8.allSatisfy(isUnreserved) { return value }
        // Encoding UTF-8 with a non-empty allowed set cannot fail; the fallback is unreachable.
        return value.addingPercentEncoding(withAllowedCharacters: unreserved) ?? ""
    }

    /// RFC 3986's unreserved characters: ALPHA, DIGIT, `-`, `.`, `_`, `~`.
    private static func isUnreserved(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
            true
        default: false
        }
    }
}
