import Foundation
import Hummingbird
import Logging

/// `GET /{tenant}/adminconsent?client_id=…&redirect_uri=…&state=…`: the URL an ISV sends a
/// customer's administrator. In Entra the admin signs in, approves, and the application gets
/// its service principal in that tenant; the browser then lands on `redirect_uri` with
/// `admin_consent=True&tenant={tid}&state=…`. Here there is no sign-in: opening the URL
/// (with curl, in a test) is the approval, so the tenant must be named (id or domain), not
/// `common` / `organizations`.
extension EntraService {
    func adminConsent(request: Request, tenantName: String, context: Context) async throws -> Response {
        if let fault = try await state.injectFault(service: .entra, operation: "adminconsent", target: tenantName, channel: context.channel) {
            return failure(.temporarilyUnavailable, status: fault.status, retryAfter: fault.retryAfter)
        }
        guard let tenant = state.read({ $0.tenant(named: tenantName) }) else { return failure(.tenantNotFound(tenantName)) }
        state.counters.increment("entra.adminconsent", "entra.adminconsent.\(tenant.id)")
        let query = FormItems(request.uri.query)
        guard let clientID = query["client_id"], !clientID.isEmpty else { return failure(.missingParameter("client_id")) }
        var redirect: URLComponents?
        if let uri = query["redirect_uri"], !uri.isEmpty {
            guard let components = URLComponents(string: uri), components.scheme != nil, components.host != nil else {
                return failure(.invalidRedirectURI)
            }
            redirect = components
        }
        // client_id is an appId; Entra does not take an application's object id here.
        guard let app = state.read({ $0.applications[clientID.lowercased()] }) else {
            return failure(.applicationNotFound(appID: clientID, tenant: tenant.id))
        }
        try state.createServicePrincipal(tenantID: tenant.id, appID: app.appId)
        state.logger.info("admin consent granted", metadata: ["tenant": "\(tenant.id)", "app": "\(app.appId)"])

        let headers = Self.standardHeaders(requestID: newGUID())
        guard var target = redirect else {
            return Reply.text(200, Self.consentPage(app: app.displayName, tenant: tenant.displayName),
                              contentType: "text/html; charset=utf-8", headers: headers)
        }
        var items = ["admin_consent=True", "tenant=\(Self.queryEncode(tenant.id))"]
        if let stateValue = query["state"] { items.append("state=\(Self.queryEncode(stateValue))") }
        let existing = (target.percentEncodedQuery ?? "").isEmpty ? [] : [target.percentEncodedQuery!]
        target.percentEncodedQuery = (existing + items).joined(separator: "&")
        return Reply.redirect(to: target.string ?? "", headers: headers)
    }

    /// RFC 3986 unreserved characters pass; everything else is percent-encoded.
    static func queryEncode(_ value: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return value.addingPercentEncoding(withAllowedCharacters: allowed) ?? value
    }

    static func consentPage(app: String, tenant: String) -> String {
        func escape(_ s: String) -> String {
            s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
                .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
        }
        return """
            <!DOCTYPE html>
            <html><head><meta charset="utf-8"><title>Permissions granted</title></head>
            <body><h1>Permissions granted</h1>
            <p>Admin consent was granted for <strong>\(escape(app))</strong> in <strong>\(escape(tenant))</strong>. You can close this window.</p>
            </body></html>

            """
    }
}
