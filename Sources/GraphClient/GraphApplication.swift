import AzureHTTP
import Foundation

/// The application whose federated identity credentials are managed, as Graph addresses it:
/// by its object id (`/applications/{id}`, different in every tenant's directory) or by its
/// application (client) id as alternate key (`/applications(appId='{appId}')`, the id the ISV
/// configures everywhere else). Both are GUIDs, checked before they go into a URL.
public enum GraphApplication: Sendable, Hashable, CustomStringConvertible {
    case objectID(String)
    case appID(String)

    public var description: String {
        switch self {
        case .objectID(let id): "application object \(id)"
        case .appID(let id): "application appId \(id)"
        }
    }

    /// `applications/{id}` or `applications(appId='{appId}')`, percent-encoded.
    func pathSegment(clientRequestID: String) throws(GraphError) -> String {
        switch self {
        case .objectID(let id):
            guard Self.isGUID(id) else { throw .invalidArgument("the application object id is not a GUID", clientRequestID) }
            return "applications/\(AzureHTTP.percentEncoded(id))"
        case .appID(let id):
            guard Self.isGUID(id) else { throw .invalidArgument("the application (client) id is not a GUID", clientRequestID) }
            return "applications(appId=\(ODataLiteral.pathKey(id)))"
        }
    }

    /// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, ASCII hex digits in either case.
    static func isGUID(_ value: String) -> Bool {
        let groups = value.split(separator: "-", omittingEmptySubsequences: false)
        guard groups.map(\.utf8.count) == [8, 4, 4, 4, 12] else { return false }
        return groups.allSatisfy { $0.utf8.allSatisfy { (48...57).contains($0) || (65...70).contains($0) || (97...102).contains($0) } }
    }
}

extension GraphError {
    /// A request refused before it was sent.
    static func invalidArgument(_ why: String, _ clientRequestID: String) -> GraphError {
        GraphError(kind: .invalidArgument, graphMessage: why, clientRequestID: clientRequestID)
    }
}
