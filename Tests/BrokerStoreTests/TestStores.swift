import FedBrokerCore
import Foundation
import Logging
import Testing

@testable import BrokerStore
import FedBrokerTestSupport

/// The two implementations the conformance suite runs against.
enum StoreKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite
    case postgres

    var testDescription: String { self.rawValue }
}

/// Thrown when the PostgreSQL half of the suite has no server: a failure, never a silent skip.
struct MissingTestDatabase: Error, CustomStringConvertible {
    var description: String {
        "FEDBROKER_TEST_DATABASE_URL is not set. Run scripts/test.sh (it starts a throwaway PostgreSQL), or export "
            + "FEDBROKER_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:54329/postgres?sslmode=disable"
    }
}

/// A fresh, empty database of one kind, with a manual clock, torn down afterwards.
struct TestDatabase: Sendable {
    let kind: StoreKind
    /// What `fedbroker --database-url` would be given to reach the same database.
    let url: String
    let clock: ManualWallClock
    private let cleanup: @Sendable () async -> Void

    static let logger: Logger = {
        var logger = Logger(label: "fedbroker.store.tests")
        logger.logLevel = .critical
        return logger
    }()

    static func make(_ kind: StoreKind) async throws -> TestDatabase {
        let clock = ManualWallClock()
        switch kind {
        case .sqlite:
            let directory = FileManager.default.temporaryDirectory
                .appendingPathComponent("fedbroker-store-\(UUID().uuidString)", isDirectory: true)
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            let path = directory.appendingPathComponent("broker.db").path
            return TestDatabase(kind: kind, url: "sqlite:\(path)", clock: clock) {
                try? FileManager.default.removeItem(at: directory)
            }
        case .postgres:
            guard let base = ProcessInfo.processInfo.environment["FEDBROKER_TEST_DATABASE_URL"], !base.isEmpty else {
                throw MissingTestDatabase()
            }
            let settings = try PostgresSettings(url: base)
            let name = "fbtest_\(UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(20))"
            try await PostgresBackend.executeOutsideTransactionForTesting(settings, "CREATE DATABASE \(name)")
            var components = URLComponents(string: base)!
            components.path = "/\(name)"
            return TestDatabase(kind: kind, url: components.string!, clock: clock) {
                try? await PostgresBackend.executeOutsideTransactionForTesting(
                    settings, "DROP DATABASE IF EXISTS \(name) WITH (FORCE)")
            }
        }
    }

    func open() async throws -> SQLBrokerStore {
        var configuration = try StoreConfiguration(databaseURL: self.url)
        if case .postgres(var settings) = configuration {
            // The race tests queue dozens of writers on one advisory lock while the whole suite runs
            // in parallel on two cores; they check invariants, not latency, so the production
            // lock wait bound (5 s) is raised here. PostgresTransactionTests test the defaults.
            settings.lockTimeout = .seconds(60)
            settings.statementTimeout = .seconds(60)
            // Likewise the wait for a connection: the suite's parallel openings on a loaded machine
            // are not a server that is down (StoreDownTests and PostgresTLSTests test the bound).
            settings.connectTimeout = .seconds(60)
            configuration = .postgres(settings)
        }
        return try await SQLBrokerStore.open(configuration, clock: self.clock, logger: Self.logger)
    }

    func destroy() async { await self.cleanup() }
}

/// Runs `body` with a migrated store on a fresh database of `kind`; closes and drops it afterwards.
func withStore(
    _ kind: StoreKind, migrate: Bool = true, _ body: (SQLBrokerStore, TestDatabase) async throws -> Void
) async throws {
    let database = try await TestDatabase.make(kind)
    do {
        let store = try await database.open()
        do {
            if migrate { _ = try await store.migrate() }
            try await body(store, database)
            try await store.close()
        } catch {
            try? await store.close()
            throw error
        }
    } catch {
        await database.destroy()
        throw error
    }
    await database.destroy()
}

/// Opens `count` more stores on the same database (other "replicas"), and closes them whatever
/// `body` does: an unclosed SQLite connection asserts when it is deallocated.
func withReplicas<T>(
    _ count: Int, of database: TestDatabase, _ body: ([SQLBrokerStore]) async throws -> T
) async throws -> T {
    var stores: [SQLBrokerStore] = []
    do {
        for _ in 0..<count { stores.append(try await database.open()) }
        let result = try await body(stores)
        for store in stores { try await store.close() }
        return result
    } catch {
        for store in stores { try? await store.close() }
        throw error
    }
}

// MARK: - Fixtures

let applicationID = "11111111-2222-3333-4444-555555555555"

func makeIdentity(_ n: Int, application: String = applicationID) -> FICSlotIdentity {
    try! FICSlotIdentity(
        applicationID: application, managedIdentityClientID: "mi-client-\(n)", managedIdentityPrincipalID: "mi-object-\(n)",
        issuer: "https://login.microsoftonline.com/isv-tenant/v2.0", subject: "mi-object-\(n)")
}

func slotID(_ n: Int) -> FICSlotID { FICSlotID(rawValue: String(format: "fic-%02d", n))! }

func makeRegistration(_ n: Int, entra: EntraTenantID? = nil) -> TenantRegistration {
    try! TenantRegistration(
        id: TenantID(rawValue: "customer-\(n)")!,
        entraTenantID: entra ?? EntraTenantID(UUID(uuidString: String(format: "00000000-0000-0000-0000-%012d", n))!),
        displayName: "Customer \(n)", geo: "europe",
        key: try! KeyReference(vaultURL: "https://customer\(n).vault.azure.net", keyName: "cmk"))
}

/// Creates `count` slots and activates them.
@discardableResult
func makeActiveSlots(_ store: some BrokerStore, _ range: ClosedRange<Int>) async throws -> [FICSlot] {
    var slots: [FICSlot] = []
    for n in range {
        let slot = try await store.createSlot(slotID(n), identity: makeIdentity(n), actor: "sre")
        slots.append(try await store.transitionSlot(slot.id, expectedVersion: slot.version, event: .activate, actor: "sre"))
    }
    return slots
}

/// Expects `body` to throw a `BrokerError` with `code`.
func expectBrokerError(
    _ code: BrokerError.Code, sourceLocation: SourceLocation = #_sourceLocation, _ body: () async throws -> Void
) async {
    do {
        try await body()
        Issue.record("expected \(code), but nothing was thrown", sourceLocation: sourceLocation)
    } catch let error as BrokerError {
        #expect(error.code == code, "\(String(reflecting: error))", sourceLocation: sourceLocation)
    } catch {
        Issue.record("expected BrokerError \(code), got \(String(reflecting: error))", sourceLocation: sourceLocation)
    }
}

/// Waits for `operation` at most `seconds`; fails the test (instead of hanging) when it doesn't finish.
func withDeadline<T: Sendable>(
    seconds: Double, _ what: String, _ operation: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await operation() }
        group.addTask {
            try await Task.sleep(for: .milliseconds(Int(seconds * 1000)))
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let value = first else {
            throw DeadlineExceeded(what: what, seconds: seconds)
        }
        return value
    }
}

struct DeadlineExceeded: Error, CustomStringConvertible {
    let what: String
    let seconds: Double
    var description: String { "\(self.what) did not happen within \(self.seconds) s" }
}
