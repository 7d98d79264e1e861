@testable import AzureEmulator
import FedBrokerCore
import Foundation
import JWTKit
import Testing

/// Staff tokens for the admin API: the seeded `fedbroker-admin` application and staff, the
/// sign-in stand-in, and a validator that knows only discovery and the JWKS.
@Suite struct StaffTokenTests {
    @Test func adminTokenVerifiesThroughDiscoveryAndJWKSWithEntrasV2Shape() async throws {
        try await withEmulator { h in
            let s = h.scenario
            let oid = try #require(s.staffUserObjectIDs["admin"])
            let reply = try await h.staffToken(user: oid, resource: "api://fedbroker-admin")
            #expect(reply.status == 200, "\(reply.body)")
            #expect(reply.json["token_type"] as? String == "Bearer")
            #expect(reply.json["expires_in"] as? Int == 3599)
            #expect(reply.json["ext_expires_in"] as? Int == 3599)
            let token = try #require(reply.json["access_token"] as? String)

            let header = try Harness.jwtSegment(token, 0)
            #expect(header["typ"] as? String == "JWT")
            #expect(header["alg"] as? String == "RS256")
            let jwks = try await StaffTokenValidator(harness: h).discover(tenant: s.isvTenantID).jwks
            let served = try #require(try JSONSerialization.jsonObject(with: Data(jwks.utf8)) as? [String: Any])
            let kids = (served["keys"] as? [[String: Any]])?.compactMap { $0["kid"] as? String }
            #expect(kids == [try #require(header["kid"] as? String)])

            let claims = try await StaffTokenValidator(harness: h).validate(token, tenant: s.isvTenantID, audience: s.adminAudience)
            // The admin application keeps an app registration's default: v1.0 access tokens.
            #expect(claims.aud.value == ["api://fedbroker-admin"])
            #expect(claims.iss.value == "https://sts.windows.net/\(s.isvTenantID)/")
            #expect(claims.roles == DefaultScenario.adminRoles.map(\.value).sorted())
            #expect(claims.oid == oid)
            #expect(claims.tid == s.isvTenantID)
            #expect(claims.ver == "1.0")
            #expect(claims.appid == EmulatorState.azureCLIClientID)
            #expect(claims.appidacr == "0")
            #expect(claims.azp == nil)
            #expect(claims.name == "admin")
            #expect(claims.upn == "admin@fabrikam.onmicrosoft.com")
            #expect(claims.scp == nil)
            #expect(claims.sub.count == 43 && claims.sub != oid)  // pairwise, not the object id
            #expect(!claims.aio.isEmpty && !claims.rh.isEmpty && !claims.uti.isEmpty)
            #expect(claims.iat.value == h.clock.now.rounded && claims.nbf.value == claims.iat.value)
            #expect(claims.exp.value.timeIntervalSince(claims.iat.value) == 3600)
        }
    }

    @Test("An application that asks for v2.0 tokens gets them: aud is its appId however it was named, the v2.0 issuer, azp")
    func versionTwoApplications() async throws {
        try await withEmulator { h in
            let s = h.scenario
            let app = try h.state.createApplication(
                homeTenantID: s.isvTenantID, displayName: "v2-api", identifierUris: ["api://v2-api"],
                appRoles: [.init(value: "Reader", displayName: "Reader", description: "reads")], requestedAccessTokenVersion: 2)
            let oid = try #require(s.staffUserObjectIDs["nobody"])
            _ = try h.state.assignAppRole(appID: app.appId, principalID: oid, role: "Reader")
            let reply = try await h.staffToken(user: oid, resource: "api://v2-api")
            let token = try #require(reply.json["access_token"] as? String, "\(reply.body)")
            #expect(try Harness.jwtSegment(token, 0)["x5t"] == nil)  // v2.0 access tokens carry kid only
            let claims = try await StaffTokenValidator(harness: h).validate(token, tenant: s.isvTenantID, audience: app.appId)
            #expect(claims.aud.value == [app.appId])
            #expect(claims.iss.value == "https://login.microsoftonline.com/\(s.isvTenantID)/v2.0")
            #expect(claims.ver == "2.0")
            #expect(claims.azp == EmulatorState.azureCLIClientID)
            #expect(claims.appid == nil)
            #expect(claims.roles == ["Reader"])
            #expect(claims.preferred_username == "nobody@fabrikam.onmicrosoft.com")
        }
    }

    @Test func eachStaffUserCarriesExactlyTheirRoles() async throws {
        try await withEmulator { h in
            for (name, roles) in DefaultScenario.staffRoster {
                let token = try await h.staffAccessToken(name)
                let payload = try Harness.jwtSegment(token, 1)
                if roles.isEmpty {
                    // Entra leaves `roles` out entirely rather than sending an empty array.
                    #expect(payload["roles"] == nil, "\(name)")
                    #expect(payload.keys.contains("oid"), "\(name)")
                } else {
                    #expect(payload["roles"] as? [String] == roles.sorted(), "\(name)")
                }
            }
        }
    }

    @Test func audienceFollowsTheRequestedFormAndRolesFollowTheResourceApp() async throws {
        try await withEmulator { h in
            let s = h.scenario
            // By appId: aud is the appId, and the roles are still there.
            let byAppID = try await h.staffAccessToken("auditor", resource: s.adminAppID)
            let claims = try await StaffTokenValidator(harness: h).validate(byAppID, tenant: s.isvTenantID, audience: s.adminAppID)
            #expect(claims.roles == ["Audit.Read"])
            // `/.default` as `az --scope` sends it names the same resource.
            let scoped = try await h.staffAccessToken("auditor", resource: "api://fedbroker-admin/.default")
            #expect(try Harness.jwtSegment(scoped, 1)["aud"] as? String == "api://fedbroker-admin")

            // A first-party resource: a v1.0 token that the vault accepts, with no admin roles in it.
            let vault = try await h.staffAccessToken("admin", resource: "https://vault.azure.net")
            let payload = try Harness.jwtSegment(vault, 1)
            #expect(payload["aud"] as? String == "https://vault.azure.net")
            #expect(payload["iss"] as? String == "https://sts.windows.net/\(s.isvTenantID)/")
            #expect(payload["ver"] as? String == "1.0")
            #expect(payload["appid"] as? String == EmulatorState.azureCLIClientID)
            #expect(payload["upn"] as? String == "admin@fabrikam.onmicrosoft.com")
            #expect(payload["roles"] == nil)

            let unknown = try await h.staffToken(user: try #require(s.staffUserObjectIDs["admin"]), resource: "api://nope")
            #expect(unknown.status == 400)
            #expect(unknown.errorCode == "InvalidInput")
            #expect(((unknown.json["error"] as? [String: Any])?["message"] as? String)?.hasPrefix("AADSTS500011: The resource principal named api://nope") == true)
            let noUser = try await h.staffToken(user: UUID().uuidString, resource: s.adminAudience)
            #expect(noUser.status == 404)
            #expect(noUser.errorCode == "NotFound")
            let badLifetime = try await h.staffToken(user: try #require(s.staffUserObjectIDs["admin"]), resource: s.adminAudience, lifetimeSeconds: 0)
            #expect(badLifetime.status == 400)
        }
    }

    @Test func issuedAtOffsetMakesAnExpiredTokenTheValidatorRefuses() async throws {
        try await withEmulator { h in
            let s = h.scenario
            let oid = try #require(s.staffUserObjectIDs["onboarder"])
            let old = try await h.staffToken(user: oid, resource: s.adminAudience, lifetimeSeconds: 600, issuedAtOffsetSeconds: -3600)
            #expect(old.status == 200)
            #expect(old.json["expires_in"] as? Int == 0)
            let token = try #require(old.json["access_token"] as? String)
            let payload = try Harness.jwtSegment(token, 1)
            let now = Int(h.clock.now.timeIntervalSince1970)
            #expect(payload["iat"] as? Int == now - 3600)
            #expect(payload["nbf"] as? Int == now - 3600)
            #expect(payload["exp"] as? Int == now - 3000)
            let expired = await #expect(throws: JWTError.self) {
                _ = try await StaffTokenValidator(harness: h).validate(token, tenant: s.isvTenantID, audience: s.adminAudience)
            }
            #expect(expired?.errorType == .claimVerificationFailure)
            #expect(expired?.reason == "expired")

            // The same user a moment ago is fine; the emulator's clock moving on expires it too.
            let fresh = try await h.staffToken(user: oid, resource: s.adminAudience, lifetimeSeconds: 600)
            let freshToken = try #require(fresh.json["access_token"] as? String)
            #expect(try await StaffTokenValidator(harness: h).validate(freshToken, tenant: s.isvTenantID, audience: s.adminAudience).roles == ["Tenants.Onboard"])
            h.clock.advance(by: 601)
            let aged = await #expect(throws: JWTError.self) {
                _ = try await StaffTokenValidator(harness: h).validate(freshToken, tenant: s.isvTenantID, audience: s.adminAudience)
            }
            #expect(aged?.errorType == .claimVerificationFailure)
            #expect(aged?.reason == "expired")
        }
    }

    @Test func tokensFromAnotherTenantOrAnotherAudienceFailTheValidator() async throws {
        try await withEmulator { h in
            let s = h.scenario
            let token = try await h.staffAccessToken("admin")
            // Validated against a customer tenant's discovery: the issuer differs.
            let otherIssuer = await #expect(throws: StaffTokenValidator.Invalid.self) {
                _ = try await StaffTokenValidator(harness: h).validate(token, tenant: s.customers[0].tenantID, audience: s.adminAudience)
            }
            #expect(otherIssuer?.description.hasPrefix("issuer ") == true, "\(String(describing: otherIssuer))")
            let otherAudience = await #expect(throws: JWTError.self) {
                _ = try await StaffTokenValidator(harness: h).validate(token, tenant: s.isvTenantID, audience: "api://someone-else")
            }
            #expect(otherAudience?.errorType == .claimVerificationFailure)
            #expect(otherAudience?.reason == "not intended for api://someone-else")
        }
    }
}

private extension Date {
    /// Whole seconds, as JWT times are.
    var rounded: Date { Date(timeIntervalSince1970: timeIntervalSince1970.rounded(.down)) }
}
