import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// The emulator's control API, over HTTP like any script would call it: what the demo uses to
/// play each customer's admin (consent, role, tag, disabling the key) and to sign staff in.
struct DemoControlAPI: Sendable {
    let baseURL: String
    let http: HTTPClient

    /// The customer's admin consents to the ISV's application: its service principal appears in
    /// the customer's tenant. Answers the service principal's object id.
    func consent(tenantID: String, appID: String) async throws -> String {
        let answer = try await call(.POST, "/control/service-principals", ["tenantId": tenantID, "appId": appID])
        guard let objectID = answer["objectId"] as? String else { throw DemoFailure("consent: no objectId in the control API's answer") }
        return objectID
    }

    /// The customer's admin assigns Key Vault Crypto Service Encryption User on the key alone.
    func grantRole(vault: String, key: String, principalID: String) async throws {
        _ = try await call(.POST, "/control/vaults/\(vault)/role-assignments", ["principalId": principalID, "keyName": key])
    }

    /// Replaces the key's tags (the binding tag is what proves the key was meant for this ISV).
    func tagKey(vault: String, key: String, tags: [String: String]) async throws {
        _ = try await call(.PATCH, "/control/vaults/\(vault)/keys/\(key)", ["tags": tags])
    }

    func setKeyEnabled(vault: String, key: String, _ enabled: Bool) async throws {
        _ = try await call(.PATCH, "/control/vaults/\(vault)/keys/\(key)", ["enabled": enabled])
    }

    /// A staff member's access token for the admin API (the stand-in for `az account get-access-token`).
    func staffToken(userObjectID: String, resource: String) async throws -> String {
        let answer = try await call(.POST, "/control/users/\(userObjectID)/token", ["resource": resource])
        guard let token = answer["access_token"] as? String else { throw DemoFailure("staff sign-in: no access_token in the answer") }
        return token
    }

    private func call(_ method: HTTPMethod, _ path: String, _ body: [String: Any]) async throws -> [String: Any] {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = method
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(bytes: Array(try JSONSerialization.data(withJSONObject: body))))
        let response = try await http.execute(request, timeout: .seconds(30))
        let bytes = try await response.body.collect(upTo: 1 << 20)
        guard (200..<300).contains(response.status.code) else {
            throw DemoFailure("control API \(method.rawValue) \(path) answered \(response.status.code): \(String(buffer: bytes).prefix(300))")
        }
        return (try? JSONSerialization.jsonObject(with: Data(bytes.readableBytesView)) as? [String: Any]) ?? [:]
    }
}
