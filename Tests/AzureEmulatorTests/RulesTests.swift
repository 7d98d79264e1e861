@testable import AzureEmulator
import Foundation
import HTTPTypes
import Testing

@Suite struct FederatedCredentialMatcherTests {
    let t0 = Date(timeIntervalSince1970: 1_000)
    let issuer = "https://login.microsoftonline.com/isv/v2.0"

    func credential(subject: String = "Principal-1", effective: Date? = nil, removed: Date? = nil) -> Directory.FederatedCredential {
        .init(id: "c1", name: "fic", issuer: issuer, subject: subject, audiences: ["api://AzureADTokenExchange"],
              description: nil, effectiveFrom: effective ?? t0, removedFrom: removed)
    }

    @Test func matchesIssuerSubjectAndAudienceExactly() {
        let c = [credential()]
        #expect(FederatedCredentialMatcher.match(issuer: issuer, subject: "Principal-1", audiences: ["api://AzureADTokenExchange"], credentials: c, now: t0) == .matched(credentialID: "c1"))
        #expect(FederatedCredentialMatcher.match(issuer: issuer + "/", subject: "Principal-1", audiences: ["api://AzureADTokenExchange"], credentials: c, now: t0) == .noMatch)
        #expect(FederatedCredentialMatcher.match(issuer: issuer, subject: "Principal-1", audiences: ["api://azureadtokenexchange"], credentials: c, now: t0) == .noMatch)
        #expect(FederatedCredentialMatcher.match(issuer: issuer.uppercased(), subject: "Principal-1", audiences: ["api://AzureADTokenExchange"], credentials: c, now: t0) == .noMatch)
    }

    @Test func subjectDifferingOnlyInCaseIsItsOwnError() {
        #expect(FederatedCredentialMatcher.match(issuer: issuer, subject: "principal-1", audiences: ["api://AzureADTokenExchange"], credentials: [credential()], now: t0) == .subjectCaseMismatch)
    }

    @Test func propagationHidesNewCredentialsAndKeepsDeletedOnesForAWhile() {
        let new = [credential(effective: t0.addingTimeInterval(60))]
        #expect(FederatedCredentialMatcher.match(issuer: issuer, subject: "Principal-1", audiences: ["api://AzureADTokenExchange"], credentials: new, now: t0.addingTimeInterval(59)) == .noMatch)
        #expect(FederatedCredentialMatcher.match(issuer: issuer, subject: "Principal-1", audiences: ["api://AzureADTokenExchange"], credentials: new, now: t0.addingTimeInterval(60)) == .matched(credentialID: "c1"))
        let deleted = [credential(removed: t0.addingTimeInterval(30))]
        #expect(FederatedCredentialMatcher.match(issuer: issuer, subject: "Principal-1", audiences: ["api://AzureADTokenExchange"], credentials: deleted, now: t0.addingTimeInterval(29)) == .matched(credentialID: "c1"))
        #expect(FederatedCredentialMatcher.match(issuer: issuer, subject: "Principal-1", audiences: ["api://AzureADTokenExchange"], credentials: deleted, now: t0.addingTimeInterval(30)) == .noMatch)
        #expect(!FederatedCredentialMatcher.isListed(deleted[0]))
    }

    @Test(arguments: [("msi-webapp1", true), ("ab", false), ("-abc", false), ("a_b-c", true), ("a b c", false), (String(repeating: "a", count: 121), false), ("ünï", false)])
    func namesFollowGraphRules(_ name: String, _ valid: Bool) {
        #expect(FederatedCredentialMatcher.isValidName(name) == valid)
    }
}

@Suite struct RoleBasedAccessTests {
    let t0 = Date(timeIntervalSince1970: 1_000)

    func assignment(role: String, key: String? = nil, effective: Double = 0, removed: Double? = nil) -> Directory.RoleAssignment {
        .init(id: "ra", principalId: "sp-1", roleDefinitionId: role, keyScope: key, effectiveFrom: t0.addingTimeInterval(effective),
              removedFrom: removed.map { t0.addingTimeInterval($0) })
    }

    @Test func serviceEncryptionUserGrantsReadWrapUnwrapAtVaultScope() {
        let a = [assignment(role: RoleBasedAccess.cryptoServiceEncryptionUser.id)]
        for action in [RoleBasedAccess.DataAction.read, .wrap, .unwrap] {
            #expect(RoleBasedAccess.authorizingAssignment(principalID: "SP-1", action: action, keyName: "any", assignments: a, now: t0) != nil)
        }
        // Update Key (tags, attributes) is not in the role: the broker's identity cannot retag keys.
        #expect(RoleBasedAccess.authorizingAssignment(principalID: "sp-1", action: .update, keyName: "any", assignments: a, now: t0) == nil)
        #expect(RoleBasedAccess.authorizingAssignment(principalID: "sp-2", action: .unwrap, keyName: "any", assignments: a, now: t0) == nil)
    }

    /// `keys/update/action`: in Crypto User's data actions, and in Officer's `keys/*` and
    /// Administrator's `vaults/*`; never in Reader's or Crypto Service Encryption User's.
    @Test func updateKeyIsGrantedAsAzuresBuiltInRolesGrantIt() {
        let granting = [RoleBasedAccess.cryptoUser, RoleBasedAccess.cryptoOfficer, RoleBasedAccess.administrator].map(\.id)
        for role in RoleBasedAccess.builtInRoles {
            let a = [assignment(role: role.id)]
            let allowed = RoleBasedAccess.authorizingAssignment(principalID: "sp-1", action: .update, keyName: "cmk", assignments: a, now: t0) != nil
            #expect(allowed == granting.contains(role.id), "\(role.name)")
        }
        #expect(RoleBasedAccess.DataAction.update.rawValue == "Microsoft.KeyVault/vaults/keys/update/action")
    }

    @Test func keyScopeCoversOnlyThatKey() {
        let a = [assignment(role: RoleBasedAccess.cryptoUser.id, key: "cmk")]
        #expect(RoleBasedAccess.authorizingAssignment(principalID: "sp-1", action: .unwrap, keyName: "CMK", assignments: a, now: t0) != nil)
        #expect(RoleBasedAccess.authorizingAssignment(principalID: "sp-1", action: .unwrap, keyName: "other", assignments: a, now: t0) == nil)
    }

    @Test func readerCannotUnwrapAndDelaysApply() {
        #expect(RoleBasedAccess.authorizingAssignment(principalID: "sp-1", action: .unwrap, keyName: "k", assignments: [assignment(role: RoleBasedAccess.reader.id)], now: t0) == nil)
        let delayed = [assignment(role: RoleBasedAccess.cryptoServiceEncryptionUser.id, effective: 600, removed: 900)]
        #expect(RoleBasedAccess.authorizingAssignment(principalID: "sp-1", action: .unwrap, keyName: "k", assignments: delayed, now: t0.addingTimeInterval(599)) == nil)
        #expect(RoleBasedAccess.authorizingAssignment(principalID: "sp-1", action: .unwrap, keyName: "k", assignments: delayed, now: t0.addingTimeInterval(600)) != nil)
        #expect(RoleBasedAccess.authorizingAssignment(principalID: "sp-1", action: .unwrap, keyName: "k", assignments: delayed, now: t0.addingTimeInterval(900)) == nil)
    }

    @Test func rolesResolveByNameOrID() {
        #expect(RoleBasedAccess.role(named: "key vault crypto service encryption user")?.id == "e147488a-f6f5-4113-8e2d-b22465e65bf6")
        #expect(RoleBasedAccess.role(named: "12338af0-0e69-4776-bea7-57ae8d297424")?.name == "Key Vault Crypto User")
        #expect(RoleBasedAccess.role(named: "Owner") == nil)
    }
}

@Suite struct RouteTests {
    @Test(arguments: [
        ("GET", "/keys/cmk", KeyVaultService.Operation.getKey(name: "cmk", version: nil)),
        ("GET", "/keys/cmk/", .getKey(name: "cmk", version: nil)),
        ("GET", "/keys/cmk/abc", .getKey(name: "cmk", version: "abc")),
        ("GET", "/keys/cmk/abc/", .getKey(name: "cmk", version: "abc")),
        ("POST", "/keys/cmk/abc/wrapkey", .wrap(name: "cmk", version: "abc")),
        ("POST", "/keys/cmk/abc/wrapKey", .wrap(name: "cmk", version: "abc")),
        ("POST", "/keys/cmk//unwrapKey", .unwrap(name: "cmk", version: nil)),
        ("POST", "/keys/cmk/UNWRAPKEY", .unwrap(name: "cmk", version: nil)),
        ("POST", "/Keys/cmk/abc/unwrapkey", .unwrap(name: "cmk", version: "abc")),
    ])
    func keyVaultPaths(_ method: String, _ path: String, _ expected: KeyVaultService.Operation) {
        #expect(KeyVaultService.route(method: .init(method)!, path: path) == expected)
    }

    @Test(arguments: [("GET", "/secrets/x"), ("POST", "/keys/cmk/abc/encrypt"), ("GET", "/keys/cmk/a/b"), ("DELETE", "/keys/cmk"), ("GET", "/keys/")])
    func keyVaultRejects(_ method: String, _ path: String) {
        #expect(KeyVaultService.route(method: .init(method)!, path: path) == nil)
    }

    @Test func apiVersions() {
        for v in ["7.0", "7.4", "7.4-preview.1", "7.6", "2025-07-01"] { #expect(KeyVaultService.isSupportedAPIVersion(v), "\(v)") }
        for v in ["", "7.9", "8.0", "2018-02-01", "latest"] { #expect(!KeyVaultService.isSupportedAPIVersion(v), "\(v)") }
    }

    @Test func graphPaths() {
        #expect(GraphService.route(method: .get, path: "/v1.0/applications/obj/federatedIdentityCredentials") == .list(app: "obj"))
        #expect(GraphService.route(method: .post, path: "/v1.0/applications/obj/federatedIdentityCredentials/") == .create(app: "obj"))
        #expect(GraphService.route(method: .post, path: "/beta/applications(appId='app')/federatedIdentityCredentials") == .create(app: "app"))
        #expect(GraphService.route(method: .delete, path: "/v1.0/applications/obj/federatedIdentityCredentials/id1") == .delete(app: "obj", credential: "id1"))
        #expect(GraphService.route(method: .get, path: "/v1.0/applications/obj/federatedIdentityCredentials(name='fic')") == .get(app: "obj", credential: "name:fic"))
        #expect(GraphService.route(method: .get, path: "/v1.0/users") == nil)
    }
}

@Suite struct TokenLifetimeTests {
    @Test(arguments: [
        (Int64?(1_000), Int64?(nil), Int64(999), TokenLifetime.valid),
        (1_000, nil, 1_299, .valid),  // inside the five-minute skew
        (1_000, nil, 1_300, .expired),
        (nil, nil, 0, .missingExpiry),
        (5_000, 2_000, 1_700, .valid),  // nbf within the skew
        (5_000, 2_000, 1_699, .notYetValid),
    ])
    func windowWithSkew(_ exp: Int64?, _ nbf: Int64?, _ now: Int64, _ expected: TokenLifetime) {
        #expect(TokenLifetime.check(exp: exp, nbf: nbf, now: now) == expected)
    }
}
