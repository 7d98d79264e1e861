import AzureHTTP
import FedBrokerCore
import Foundation
import NIOHTTP1

extension GraphError {
    /// Reads a non-2xx answer: Graph's body `{"error":{"code","message","innerError":{"request-id",…}}}`
    /// and its `request-id` and `Retry-After` headers.
    /// - Parameter maximumRetryAfter: the longest wait a `Retry-After` may ask for; larger (or
    ///   non-finite) values are clamped, so a hostile answer cannot park a caller or trap a conversion.
    init(response: AzureHTTP.Response, clientRequestID: String, now: Date, maximumRetryAfter: Double) {
        let error = response.json?["error"] as? [String: Any]
        let code = error?["code"] as? String
        let message = error?["message"] as? String
        let inner = (error?["innerError"] ?? error?["innererror"]) as? [String: Any]
        let retryAfter = Self.clampedRetryAfter(
            parseRetryAfter(response.headers.first(name: "Retry-After"), now: now), maximum: maximumRetryAfter)
        self.init(
            kind: Self.classify(status: response.status, graphCode: code, message: message ?? "", retryAfter: retryAfter),
            httpStatus: response.status, graphCode: code, graphMessage: message,
            requestID: response.headers.first(name: "request-id") ?? inner?["request-id"] as? String,
            clientRequestID: clientRequestID, retryAfter: retryAfter)
    }

    /// Status first, Graph's code where one status means several things.
    static func classify(status: Int, graphCode: String?, message: String, retryAfter: Double?) -> Kind {
        // Real Graph's answer to a 21st credential is unconfirmed (WIRE.md §3.5): the emulator
        // answers 400 `Request_BadRequest` "The maximum number of federated identity credentials
        // (20) for this application has been reached.", and `Request_BadRequest` says nothing on
        // its own, so the message is what identifies it, whatever 4xx carries it.
        if (400..<500).contains(status), message.lowercased().contains("maximum number of federated identity credentials") {
            return .credentialLimitReached
        }
        switch status {
        case 400:
            // Recorded (Azure/azure-workload-identity#434): "The combination of issuer and subject
            // must be unique for the application. …". The same code may name other invalid values.
            if graphCode == "InvalidFederatedIdentityCredentialValue", message.lowercased().contains("unique") {
                return .duplicateIssuerSubject
            }
            return .invalidRequest
        case 401: return .unauthorized
        case 403: return .insufficientPrivileges
        case 404: return .notFound
        case 409: return .nameConflict
        case 429: return .throttled(retryAfter: retryAfter)
        case 500...599: return .server(status: status)
        default: return .invalidRequest
        }
    }

    /// A `Retry-After` in seconds, within 0...maximum; nil when absent or not a number.
    static func clampedRetryAfter(_ seconds: Double?, maximum: Double) -> Double? {
        guard let seconds, !seconds.isNaN else { return nil }
        return min(max(seconds, 0), maximum)
    }
}
