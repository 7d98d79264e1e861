@testable import AzureEmulator
import Foundation
import Testing

@Suite struct ErrorBodyTests {
    @Test func aadstsBodyHasTheRecordedShape() throws {
        let failure = AADSTSFailure.noMatchingFIC(issuer: "https://login.microsoftonline.com/t/v2.0", subject: "s", audience: "api://AzureADTokenExchange")
        let body = failure.body(traceID: "trace-1", correlationID: "corr-1", at: Date(timeIntervalSince1970: 1_642_719_312))
        let json = try #require(try JSONSerialization.jsonObject(with: Data(body.serialized().utf8)) as? [String: Any])
        #expect(json["error"] as? String == "invalid_request")
        #expect(json["error_codes"] as? [Int] == [70021])
        #expect(json["timestamp"] as? String == "2022-01-20 22:55:12Z")
        #expect(json["trace_id"] as? String == "trace-1")
        #expect(json["correlation_id"] as? String == "corr-1")
        #expect(json["error_uri"] as? String == "https://login.microsoftonline.com/error?code=70021")
        let description = try #require(json["error_description"] as? String)
        #expect(description.hasPrefix("AADSTS70021: No matching federated identity record found for presented assertion. Assertion Issuer: 'https://login.microsoftonline.com/t/v2.0'. Assertion Subject: 's'. Assertion Audience: 'api://AzureADTokenExchange'."))
        #expect(description.hasSuffix("\r\nTrace ID: trace-1\r\nCorrelation ID: corr-1\r\nTimestamp: 2022-01-20 22:55:12Z"))
        #expect(failure.status == 400)
    }

    @Test(arguments: [
        (AADSTSFailure.applicationNotFound(appID: "a", tenant: "t"), 700016, "unauthorized_client", 400),
        (.assertionOutOfRange(now: Date(), notBefore: nil, expiry: nil), 700024, "invalid_client", 401),
        (.tenantNotFound("x"), 90002, "invalid_tenant", 400),
        (.invalidSignature, 700027, "invalid_client", 401),
        (.invalidScope("a b"), 70011, "invalid_scope", 400),
        (.conditionalAccess, 53003, "invalid_grant", 400),
        (.subjectCaseMismatch(subject: "S"), 7002138, "invalid_client", 401),
    ])
    func aadstsCodesTravelWithTheirErrorAndStatus(_ f: AADSTSFailure, _ code: Int, _ error: String, _ status: Int) {
        #expect(f.code == code)
        #expect(f.error == error)
        #expect(f.status == status)
    }

    @Test func keyVaultChallengeBodyIsTheRecordedNinetySevenBytes() {
        let body = KeyVaultFailure.missingToken.body.serialized()
        #expect(body == #"{"error":{"code":"Unauthorized","message":"AKV10000: Request is missing a Bearer or PoP token."}}"#)
        #expect(body.utf8.count == 97)
        #expect(KeyVaultFailure.missingToken.challenge)
    }

    @Test func keyVaultForbiddenCarriesItsInnerError() {
        let body = KeyVaultFailure.operationForbidden("decrypt").body.serialized()
        #expect(body == #"{"error":{"code":"Forbidden","message":"Operation decrypt is not permitted on this key.","innererror":{"code":"KeyOperationForbidden"}}}"#)
        #expect(body.utf8.count == 136)  // the recorded Content-Length
        let throttled = KeyVaultFailure.throttled.body.serialized()
        #expect(throttled.utf8.count == 146)  // the recorded Content-Length
    }

    @Test func rbacMessageNamesCallerActionAndResource() {
        let f = KeyVaultFailure.forbiddenByRbac(
            appID: "app", objectID: "oid", issuer: "https://sts.windows.net/t/",
            action: RoleBasedAccess.DataAction.unwrap.rawValue, resource: "/subscriptions/s/vaults/v/keys/k", vault: "v", region: "westeurope")
        #expect(f.status == 403)
        #expect(f.innerCode == "ForbiddenByRbac")
        #expect(f.message.contains("Caller: appid=app;oid=oid;iss=https://sts.windows.net/t/\r\n"))
        #expect(f.message.contains("Action: 'Microsoft.KeyVault/vaults/keys/unwrap/action'"))
        #expect(f.message.contains("Assignment: (not found)"))
    }

    @Test func imdsBodiesAreErrorAndDescription() {
        #expect(IMDSFailure.missingMetadataHeader.body.serialized() == #"{"error":"bad_request_102","error_description":"Required metadata header not specified"}"#)
        #expect(IMDSFailure.tooManyRequests.status == 429)
    }

    @Test func jsonEscapesControlCharactersAndKeepsOrder() {
        let v: JSONValue = .object([("b", "x\"y\\\r\n\u{01}"), ("a", .array([1, true, .null]))])
        #expect(v.serialized() == #"{"b":"x\"y\\\r\n\u0001","a":[1,true,null]}"#)
    }
}
