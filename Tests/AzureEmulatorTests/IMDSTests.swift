@testable import AzureEmulator
import Foundation
import Testing

@Suite struct IMDSTests {
    @Test func refusesRequestsWithoutMetadataHeaderOrWithForwarding() async throws {
        try await withEmulator { h in
            let mi = h.scenario.managedIdentities[0].clientId
            let noHeader = try await h.imds("api-version=2018-02-01&resource=api://AzureADTokenExchange&client_id=\(mi)", metadata: false)
            #expect(noHeader.status == 400)
            #expect(noHeader.errorCode == "bad_request_102")
            #expect(noHeader.json["error_description"] as? String == "Required metadata header not specified")
            let forwarded = try await h.send(
                .GET, "\(h.endpoints.imds)/metadata/identity/oauth2/token?api-version=2018-02-01&resource=x&client_id=\(mi)",
                headers: [("Metadata", "true"), ("X-Forwarded-For", "10.0.0.1")])
            #expect(forwarded.status == 400)
            let uppercase = try await h.send(
                .GET, "\(h.endpoints.imds)/metadata/identity/oauth2/token?api-version=2018-02-01&resource=x&client_id=\(mi)",
                headers: [("Metadata", "True")])
            #expect(uppercase.status == 400)  // "must be set to true, in all lower case"
        }
    }

    @Test func parameterErrors() async throws {
        try await withEmulator { h in
            let mi = h.scenario.managedIdentities[0]
            #expect(try await h.imds("resource=x&client_id=\(mi.clientId)").status == 400)  // no api-version
            #expect(try await h.imds("api-version=2018-02-01&client_id=\(mi.clientId)").status == 400)  // no resource
            let both = try await h.imds("api-version=2018-02-01&resource=x&client_id=\(mi.clientId)&object_id=\(mi.principalId)")
            #expect(both.status == 400)
            #expect(both.errorCode == "invalid_request")
            let duplicate = try await h.imds("api-version=2018-02-01&resource=x&resource=y&client_id=\(mi.clientId)")
            #expect(duplicate.status == 400)
            let unknown = try await h.imds("api-version=2018-02-01&resource=x&client_id=\(UUID().uuidString)")
            #expect(unknown.status == 400)
            #expect(unknown.errorCode == "invalid_request")
            // Two identities are attached, so a request naming none is ambiguous.
            let none = try await h.imds("api-version=2018-02-01&resource=x")
            #expect(none.status == 400)
            let notFound = try await h.send(.GET, "\(h.endpoints.imds)/metadata/instance?api-version=2021-02-01", headers: [("Metadata", "true")])
            #expect(notFound.status == 404)
        }
    }

    @Test func selectsByObjectIDAndResourceIDToo() async throws {
        try await withEmulator { h in
            let mi = h.scenario.managedIdentities[1]
            let byObject = try await h.imds("api-version=2019-08-01&resource=api://AzureADTokenExchange&object_id=\(mi.principalId)")
            #expect(byObject.status == 200)
            #expect(byObject.json["object_id"] as? String == mi.principalId)
            let encoded = Harness.formEncode(mi.resourceId)
            let byResource = try await h.imds("api-version=2019-08-01&resource=api://AzureADTokenExchange&msi_res_id=\(encoded)")
            #expect(byResource.status == 200)
            #expect(byResource.json["client_id"] as? String == mi.clientId)
        }
    }

    @Test func throttlesPastTwentyRequestsPerSecond() async throws {
        try await withEmulator { h in
            let mi = h.scenario.managedIdentities[0].clientId
            let query = "api-version=2018-02-01&resource=api://AzureADTokenExchange&client_id=\(mi)"
            // The manual clock stands still, so all of these fall in the same second.
            for _ in 0..<20 { #expect(try await h.imds(query).status == 200) }
            let throttled = try await h.imds(query)
            #expect(throttled.status == 429)
            #expect(throttled.errorCode == "too_many_requests")
            h.clock.advance(by: 1)
            #expect(try await h.imds(query).status == 200)
        }
    }
}
