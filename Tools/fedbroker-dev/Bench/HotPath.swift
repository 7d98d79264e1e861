import AsyncHTTPClient
import AzureHTTP
import BrokerServer
import BrokerStore
import BrokerWire
import Crypto
import FedBrokerCore
import Foundation
import Logging
import SwiftProtobuf

/// The cached Unwrap through `BrokerService` itself, in process, with no socket and no Azure:
/// blob parsing, authorization from cached records, the data-key cache, the audit record made
/// durable in the journal, metrics. What the regression guard (scripts/hot-path-guard.sh) holds
/// to a baseline: not as a time, which moves with the machine and its load, but as a ratio to a
/// fixed reference computation (SHA-256 over 64 KiB) timed in the same rounds, interleaved, so a
/// loaded or slower machine slows both alike.
struct HotPath {
    let iterations: Int
    let directory: String
    let logger: Logger

    struct Result: Codable {
        var iterations: Int
        var seconds: Double
        /// Median over the rounds of (one call's time / one reference computation's time).
        var ratioToReference: Double?
        var microsecondsPerCall: Double?
        var microsecondsPerReference: Double?
    }

    static let rounds = 7

    /// The yardstick: pure CPU, no allocation to speak of, nothing the broker's code changes.
    static func reference(_ block: [UInt8]) -> UInt8 {
        var digest = SHA256.hash(data: block)
        for _ in 0..<15 { digest = SHA256.hash(data: Array(digest) + block) }
        return Array(digest)[0]
    }

    static let tenant = "hot-path"
    static let caller = "hot-path-caller"

    func run() async throws -> Result {
        let root = URL(fileURLWithPath: directory).appendingPathComponent("fedbroker-hot-path-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: root) }
        let store = try await SQLBrokerStore.open(.sqlite(path: root.appendingPathComponent("broker.db").path), logger: logger)
        let journal: AuditJournal
        do {
            _ = try await store.migrate()
            try await Self.seed(store)
            journal = try AuditJournal(store: store, configuration: .init(directory: root.appendingPathComponent("journal").path), logger: logger)
        } catch {
            try? await store.close()
            throw error
        }
        let shipper = Task { await journal.run() }
        let http = HTTPClient(eventLoopGroupProvider: .singleton)
        let outcome: Swift.Result<Result, any Error>
        do {
            // Nothing on this path calls Azure; the environment only has to be complete.
            var environment = AzureEnvironment()
            environment.applicationClientID = UUID().uuidString.lowercased()
            let service = try BrokerService(configuration: .init(environment: environment), store: store, audit: journal, httpClient: http, logger: logger)
            let (blob, key) = try Self.blob()
            service.cache.put(key, SymmetricKey(size: .bits256).withUnsafeBytes { SecretBytes($0) })
            let request = WireRequest.with { $0.unwrap = .with { $0.blob = Data(blob) } }
            let identity = CallerIdentity(name: Self.caller)
            // Warm: records cached, metric handles made, the journal's segment open.
            for _ in 0..<20 { try await Self.expectOK(await service.handle(request, caller: identity, deadline: Date().addingTimeInterval(30))) }
            let block = [UInt8](repeating: 0x5A, count: 4096)
            var ratios: [Double] = []
            var calls: [Double] = []
            var references: [Double] = []
            var total = 0.0
            var sink: UInt8 = 0
            let perRound = iterations / Self.rounds
            for round in 0..<Self.rounds where perRound > 0 || round == 0 {
                let count = max(perRound, iterations > 0 ? 1 : 0)
                guard count > 0 else { break }
                var started = DispatchTime.now().uptimeNanoseconds
                for _ in 0..<count { sink &+= Self.reference(block) }
                let reference = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9 / Double(count)
                started = DispatchTime.now().uptimeNanoseconds
                for _ in 0..<count {
                    try await Self.expectOK(await service.handle(request, caller: identity, deadline: Date().addingTimeInterval(30)))
                }
                let elapsed = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
                total += elapsed
                calls.append(elapsed / Double(count))
                references.append(reference)
                ratios.append(elapsed / Double(count) / reference)
            }
            func median(_ values: [Double]) -> Double? { values.isEmpty ? nil : values.sorted()[values.count / 2] }
            if sink == 1 { logger.trace("reference sink") }  // keeps the reference from being optimised away
            outcome = .success(
                Result(
                    iterations: iterations, seconds: total, ratioToReference: median(ratios),
                    microsecondsPerCall: median(calls).map { $0 * 1e6 }, microsecondsPerReference: median(references).map { $0 * 1e6 }))
        } catch {
            outcome = .failure(error)
        }
        shipper.cancel()
        await shipper.value
        try? await journal.shutdown()
        try? await http.shutdown()
        try? await store.close()
        return try outcome.get()
    }

    static func expectOK(_ response: WireResponse) throws {
        guard response.status.code == .ok else { throw BenchError("the hot path answered \(response.status.code): \(response.status.message)") }
    }

    /// An active tenant on an active slot, and a caller granted every operation.
    static func seed(_ store: SQLBrokerStore) async throws {
        let principal = UUID().uuidString.lowercased()
        let identity = try FICSlotIdentity(
            applicationID: UUID().uuidString.lowercased(), managedIdentityClientID: UUID().uuidString.lowercased(),
            managedIdentityPrincipalID: principal, issuer: "https://login.microsoftonline.com/\(UUID().uuidString.lowercased())/v2.0",
            subject: principal)
        let slot = try await store.createSlot(FICSlotID(rawValue: "fic-1")!, identity: identity, actor: "bench")
        _ = try await store.transitionSlot(slot.id, expectedVersion: slot.version, event: .activate, actor: "bench")
        var tenant = try await store.registerTenant(
            try TenantRegistration(
                id: TenantID(rawValue: tenant)!, entraTenantID: EntraTenantID(validating: UUID().uuidString.lowercased()),
                displayName: "Hot path", geo: "europe", key: KeyReference(vaultURL: "https://hot-path.vault.azure.net", keyName: "cmk")),
            actor: "bench")
        tenant = try await store.transitionTenant(tenant.id, expectedVersion: tenant.version, event: .validationSucceeded, actor: "bench")
        _ = try await store.transitionTenant(tenant.id, expectedVersion: tenant.version, event: .activate, actor: "bench")
        _ = try await store.createCaller(
            Caller(id: caller, identity: caller, grants: [CallerGrant(operations: Set(KeyOperation.allCases), tenants: .all)]), actor: "bench")
    }

    /// A well-formed blob of the tenant (its wrapped key is random: a cached Unwrap never opens it)
    /// and its cache key.
    static func blob() throws -> ([UInt8], DataKeyCache.Key) {
        func random(_ count: Int) -> [UInt8] { (0..<count).map { _ in UInt8.random(in: 0...255) } }
        let version = String(repeating: "ab", count: 16)
        let envelope = WrappedKeyEnvelope(
            flags: [], tenantID: tenant, vaultURL: "https://hot-path.vault.azure.net", keyName: "cmk", keyVersion: version,
            wrappedEnvelopeKey: random(384), nonce: random(12), sealedDataKey: random(32), tag: random(16))
        let blob = try envelope.serialized()
        return (blob, DataKeyCache.Key(tenantID: tenant, keyVersion: version, blob: blob, context: nil))
    }
}
