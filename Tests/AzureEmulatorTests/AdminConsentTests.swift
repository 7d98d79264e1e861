@testable import AzureEmulator
import FedBrokerCore
import Foundation
import Testing

/// The admin consent URL, "clicked" the way a test does it: one GET, no redirect followed.
@Suite struct AdminConsentTests {
    @Test func consentCreatesTheServicePrincipalAndRedirectsWithTheOutcome() async throws {
        try await withEmulator { h in
            let s = h.scenario
            let wingtip = try h.state.createTenant(displayName: "Wingtip")
            let assertion = try await h.assertion(for: s.managedIdentities[0].clientId)
            #expect(try await h.exchange(tenant: wingtip.id, assertion: assertion).aadsts == 700016)  // not installed yet

            let redirect = "https://isv.example/consent/done?from=broker"
            let url = "\(h.endpoints.authority)/\(wingtip.id)/adminconsent?client_id=\(s.appClientID)"
                + "&redirect_uri=\(Harness.formEncode(redirect))&state=\(Harness.formEncode("tenant 42/ok"))"
            let consent = try await h.send(.GET, url)
            #expect(consent.status == 302)
            #expect(consent.headers.first(name: "Location")
                    == "https://isv.example/consent/done?from=broker&admin_consent=True&tenant=\(wingtip.id)&state=tenant%2042%2Fok")
            #expect(consent.body.isEmpty)

            // The application is now installed in Wingtip: the token exchange for that tenant works.
            let exchanged = try await h.exchange(tenant: wingtip.id, assertion: assertion)
            #expect(exchanged.status == 200, "\(exchanged.body)")
            let sp = try #require(h.state.read { $0.servicePrincipal(appID: s.appClientID, tenantID: wingtip.id) })

            // Consenting again changes nothing: same service principal, same answer.
            let again = try await h.send(.GET, url)
            #expect(again.status == 302)
            #expect(h.state.read { $0.servicePrincipals.filter { $0.tenantId == wingtip.id } }.map(\.objectId) == [sp.objectId])
            let counters = try await h.send(.GET, "\(h.endpoints.control)/control/counters")
            #expect(counters.json["entra.adminconsent.\(wingtip.id)"] as? Int == 2)
        }
    }

    @Test func withoutARedirectURIAPageSaysConsentWasGranted() async throws {
        try await withEmulator { h in
            let tailspin = try h.state.createTenant(displayName: "Tailspin", domain: "tailspin.onmicrosoft.com")
            // The tenant by its domain name, as a consent URL may name it.
            let page = try await h.send(.GET, "\(h.endpoints.authority)/tailspin.onmicrosoft.com/adminconsent?client_id=\(h.scenario.appClientID)")
            #expect(page.status == 200)
            #expect(page.headers.first(name: "Content-Type") == "text/html; charset=utf-8")
            #expect(page.body.contains("Admin consent was granted for <strong>fabrikam-cmk</strong> in <strong>Tailspin</strong>"))
            #expect(h.state.read { $0.servicePrincipal(appID: h.scenario.appClientID, tenantID: tailspin.id) } != nil)
        }
    }

    @Test func unknownApplicationTenantOrBadParametersGetEntraErrors() async throws {
        try await withEmulator { h in
            let tenant = h.scenario.customers[0].tenantID
            let base = "\(h.endpoints.authority)/\(tenant)/adminconsent"
            let stranger = UUID().uuidString.lowercased()
            let before = h.state.read { $0.servicePrincipals.count }

            let unknownApp = try await h.send(.GET, "\(base)?client_id=\(stranger)&redirect_uri=https%3A%2F%2Fisv.example%2Fdone")
            #expect(unknownApp.status == 400)
            #expect(unknownApp.errorCode == "unauthorized_client")
            #expect(unknownApp.aadsts == 700016)
            #expect((unknownApp.json["error_description"] as? String)?.hasPrefix("AADSTS700016: Application with identifier '\(stranger)' was not found in the directory") == true)
            #expect(unknownApp.headers.first(name: "Location") == nil)

            let noClient = try await h.send(.GET, base)
            #expect(noClient.status == 400)
            #expect(noClient.aadsts == 900144)
            let badRedirect = try await h.send(.GET, "\(base)?client_id=\(h.scenario.appClientID)&redirect_uri=not-absolute")
            #expect(badRedirect.status == 400)
            #expect(badRedirect.aadsts == 90102)
            let noTenant = try await h.send(.GET, "\(h.endpoints.authority)/\(stranger)/adminconsent?client_id=\(h.scenario.appClientID)")
            #expect(noTenant.status == 400)
            #expect(noTenant.aadsts == 90002)
            #expect(h.state.read { $0.servicePrincipals.count } == before)
        }
    }
}
