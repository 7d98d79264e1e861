import Foundation
import Testing

@testable import FedBrokerCore

@Suite struct DomainValueTests {
    @Test("Errors compare by code, print code and message, and hide the underlying error unless reflected")
    func errorShape() {
        struct Secret: Error, CustomStringConvertible { var description: String { "password=hunter2" } }
        let error = BrokerError(.databaseUnavailable, "PostgreSQL is unreachable", underlying: Secret())
        #expect(error == BrokerError(.databaseUnavailable, "other words"))
        #expect(error != BrokerError(.versionConflict, "PostgreSQL is unreachable"))
        #expect(error.description == "database_unavailable: PostgreSQL is unreachable")
        #expect(!error.description.contains("hunter2"))
        #expect(String(reflecting: error).contains("hunter2"))
    }

    @Test("Error codes are stable strings")
    func stableCodes() {
        #expect(BrokerError.Code.versionConflict.rawValue == "version_conflict")
        #expect(BrokerError.Code.uniqueConflict.rawValue == "unique_conflict")
        #expect(BrokerError.Code.schemaTooNew.rawValue == "schema_too_new")
        #expect(BrokerError.Code.slotLimitReached.rawValue == "slot_limit_reached")
    }

    @Test("Versions start at 1 and only move forward")
    func versions() {
        #expect(RecordVersion.initial.rawValue == 1)
        #expect(RecordVersion.initial.next == RecordVersion(rawValue: 2))
        #expect(RecordVersion.initial < RecordVersion.initial.next)
    }

    @Test("Identifiers are validated and Entra ids canonicalised to lowercase")
    func identifiers() throws {
        #expect(TenantID(rawValue: "contoso-prod.eu_1") != nil)
        #expect(TenantID(rawValue: "") == nil)
        #expect(TenantID(rawValue: "a/b") == nil)
        #expect(throws: BrokerError(.invalidArgument, "")) { try TenantID(validating: "bad id") }
        let upper = "72F988BF-86F1-41AF-91AB-2D7CD011DB47"
        #expect(EntraTenantID(rawValue: upper)?.rawValue == upper.lowercased())
        #expect(EntraTenantID(rawValue: upper) == EntraTenantID(rawValue: upper.lowercased()))
        #expect(EntraTenantID(rawValue: "not-a-guid") == nil)
    }

    @Test("Key references need https, no path, valid names; same-key ignores the version")
    func keyReferences() throws {
        let key = try KeyReference(vaultURL: "https://Contoso.vault.azure.net/", keyName: "cmk", keyVersion: "abc")
        #expect(key.vaultURL == "https://contoso.vault.azure.net")
        #expect(key.isSameKey(as: try KeyReference(vaultURL: "https://contoso.vault.azure.net", keyName: "CMK")))
        #expect(throws: BrokerError(.invalidArgument, "")) { try KeyReference(vaultURL: "http://x.vault.azure.net", keyName: "k") }
        #expect(throws: BrokerError(.invalidArgument, "")) { try KeyReference(vaultURL: "https://x.vault.azure.net/keys", keyName: "k") }
        #expect(throws: BrokerError(.invalidArgument, "")) { try KeyReference(vaultURL: "https://x.vault.azure.net", keyName: "a_b") }
    }

    @Test("Grants: an operation on a tenant needs a grant covering both; disabled callers get nothing")
    func callerGrants() {
        let a = TenantID(rawValue: "a")!, b = TenantID(rawValue: "b")!
        var caller = Caller(id: "billing", identity: "spiffe://isv/billing", grants: [
            CallerGrant(operations: [.wrap, .unwrap], tenants: .only([a])),
            CallerGrant(operations: [.keyStatus], tenants: .all),
        ])
        #expect(caller.isAllowed(.wrap, for: a))
        #expect(!caller.isAllowed(.wrap, for: b))
        #expect(caller.isAllowed(.keyStatus, for: b))
        #expect(!caller.isAllowed(.rewrap, for: a))
        caller.enabled = false
        #expect(!caller.isAllowed(.keyStatus, for: a))
    }
}
