import ArgumentParser
import AzureEmulator
import AzureHTTP
import AzureIdentity
import BrokerClient
import BrokerServer
import BrokerStore
import FedBrokerCore
import Foundation
import KeyVault
import Logging

/// `fedbroker-dev bench`: the broker measured against baselines taken in the same run, on this
/// machine, over real sockets and TLS against the emulator. Figures are ratios to the baseline
/// so they travel between machines better than absolute numbers do.
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmark the broker against same-run baselines; prints a table and writes JSON.",
        discussion: """
            1. cached: Unwrap of a cached key through client + broker over mTLS, at each --concurrency, \
            beside an echo server with the same transport and TLS that answers with a canned Unwrap (no broker logic). \
            After each broker window the bench waits for the journal to ship its records, so that work does not fall \
            into the next window. With --compare-stores, a second broker on PostgreSQL (--database-url) takes its turn \
            in the same rounds, and the table puts it beside the SQLite one.
            2. uncached: Unwrap that misses the cache (a fresh blob each time), one at a time, through the broker \
            vs the Key Vault client calling the emulator directly with the same token.
            3. cold-start: `fedbroker serve` started as a new process on a store of --tenants tenants over --slots slots: \
            time until it served its first Unwrap, and its resident memory then.
            4. hot-path: cached Unwrap through the service in process (no socket, no Azure), --iterations times, \
            as a ratio to a fixed computation timed in the same rounds (scripts/hot-path-guard.sh compares it with a baseline).
            5. audit-insert: --audit-records audit records into the store (SQLite, or --database-url) in the shipper's batches, \
            time-ordered ids against random ids alternating; not in the default parts.
            6. journal-append: --journal-appends durable audit-journal appends (write and fdatasync) into segments \
            preallocated with zeros (serve's default) against segments grown as written, alternating, one at a time \
            and 16 at a time, in --store-dir; not in the default parts.
            Build with -c release first; a debug build measures the compiler, not the broker.
            """
    )

    enum Part: String, ExpressibleByArgument, CaseIterable {
        case cached, uncached, coldStart = "cold-start", hotPath = "hot-path", auditInsert = "audit-insert", journalAppend = "journal-append"
    }

    @Option(name: .long, parsing: .upToNextOption, help: "Parts to run: cached uncached cold-start hot-path audit-insert journal-append (all but audit-insert and journal-append by default).")
    var parts: [Part] = [.cached, .uncached, .coldStart, .hotPath]
    @Option(name: .long, help: "Audit records written by the audit-insert part.")
    var auditRecords: Int = 200_000
    @Option(name: .long, help: "Appends into each journal by the journal-append part.")
    var journalAppends = 4000
    @Option(name: .long, parsing: .upToNextOption, help: "Concurrent callers for the cached part.")
    var concurrency: [Int] = [1, 16, 64, 256]
    @Option(name: .long, help: "Seconds measured per point and server (after a warm-up of a quarter of it).")
    var seconds: Double = 3
    @Option(name: .long, help: "The cached part alternates echo and broker this many times per point, so a machine's drift hits both alike.")
    var rounds: Int = 3
    @Option(name: .long, help: "Client connections to the broker (and to the echo server).")
    var connections: Int = 2
    @Option(name: .long, help: "Uncached unwraps measured (each pair: broker, then direct). The broker paces a vault at 800 calls per 10 s, and each sample costs it two (a wrap to make the blob, the unwrap).")
    var uncachedSamples: Int = 200
    @Option(name: .long, help: "Cached Unwraps through the service in process (hot-path part; 0 measures setup alone, for the instruction-count guard).")
    var iterations: Int = 2000
    @Option(name: .long, help: "Tenants registered for the cold start.")
    var tenants: Int = 10_000
    @Option(name: .long, help: "FIC slots for the cold start (at most 20).")
    var slots: Int = 20
    @Option(name: .long, help: "Where the cold-start store is made (and removed after); tmpfs keeps seeding fast.")
    var coldStartDir: String = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm/fedbroker-bench" : NSTemporaryDirectory() + "fedbroker-bench"
    @Option(name: .long, help: "Where the cached and uncached parts keep their SQLite store. Every key operation commits its audit record (fsync) before it answers, so this disk's fsync latency is in every figure; /dev/shm takes it out.")
    var storeDir: String = NSTemporaryDirectory()
    enum AuditPath: String, ExpressibleByArgument, CaseIterable {
        case journal, journalInterval = "journal-interval", store

        /// The journal's sync for this path; nil: no journal (the store's commit).
        var journalSync: AuditJournal.Sync? {
            switch self {
            case .journal: .everyBatch
            case .journalInterval: .interval(.milliseconds(100))
            case .store: nil
            }
        }
    }

    @Option(name: .long, help: "Where key operations' audit records become durable before the answer: journal (serve's default: local write-ahead log, one fdatasync per batch before its answers, shipped to the store behind), journal-interval (audit.journalSync interval: written to the journal before the answer, fdatasynced every 0.1 s) or store (the store's commit on every operation).")
    var audit: AuditPath = .journal
    @Option(name: .long, help: "A PostgreSQL server (postgres://USER@HOST:PORT/DB?sslmode=…) for the cached and uncached parts' store, instead of SQLite: the bench makes a database of its own there and drops it after.")
    var databaseURL: String?
    @Flag(name: .long, help: "With --database-url: the cached part measures a broker on SQLite and a broker on that PostgreSQL server in the same run, taking turns round by round beside one echo, and reports PostgreSQL's figures against SQLite's. The uncached part then runs on SQLite.")
    var compareStores = false
    @Option(name: .long, help: "Where the JSON results go.")
    var output: String = "bench-results.json"

    func validate() throws {
        guard iterations >= 0 else { throw ValidationError("--iterations must be 0 or more") }
        guard journalAppends >= 250 else { throw ValidationError("--journal-appends must be at least 250") }
        guard auditRecords >= 1000 else { throw ValidationError("--audit-records must be at least 1000") }
        guard seconds > 0, rounds > 0, connections > 0, uncachedSamples > 0, tenants >= 0 else { throw ValidationError("--seconds, --rounds, --connections, --uncached-samples must be positive") }
        guard (1...20).contains(slots) else { throw ValidationError("--slots must be 1-20 (Entra allows 20 FICs per application)") }
        guard concurrency.allSatisfy({ $0 > 0 }) else { throw ValidationError("--concurrency values must be positive") }
        guard !compareStores || databaseURL != nil else { throw ValidationError("--compare-stores needs --database-url: the PostgreSQL server to compare SQLite with") }
    }

    func run() async throws {
        var logger = Logger(label: "fedbroker.bench")
        logger.logLevel = .error
        var results = BenchResults(machine: .current)
        results.storeDirectory = storeDir
        results.audit = audit.rawValue
        // The main world's store: SQLite unless PostgreSQL is named and not only for comparison.
        let mainDatabaseURL = compareStores ? nil : databaseURL
        results.store = compareStores && parts.contains(.cached) ? "sqlite and postgres" : mainDatabaseURL == nil ? "sqlite" : "postgres"
        #if DEBUG
        note("warning: this is a debug build; build with `swift build -c release` for figures worth reporting")
        results.debugBuild = true
        #endif
        if parts.contains(.cached) || parts.contains(.uncached) {
            try await withWorld(databaseURL: mainDatabaseURL, logger: logger) { world in
                if parts.contains(.cached), compareStores, let databaseURL {
                    results.cached = try await withWorld(databaseURL: databaseURL, logger: logger) { try await cached(world, beside: $0) }
                } else if parts.contains(.cached) {
                    results.cached = try await cached(world, beside: nil)
                }
                if parts.contains(.uncached) { results.uncached = try await uncached(world) }
            }
        }
        if parts.contains(.hotPath) {
            note("hot path: \(iterations) cached Unwraps through the service in process …")
            results.hotPath = try await HotPath(iterations: iterations, directory: storeDir, logger: logger).run()
        }
        if parts.contains(.auditInsert) {
            results.auditInsert = try await AuditInsert(records: auditRecords, directory: storeDir, databaseURL: databaseURL, logger: logger, note: note).run()
        }
        if parts.contains(.journalAppend) {
            results.journalAppend = try await JournalAppend(appends: journalAppends, directory: storeDir, logger: logger, note: note).run()
        }
        if parts.contains(.coldStart) {
            results.coldStart = try await ColdStart(tenants: tenants, slots: slots, directory: coldStartDir, logger: logger, note: note).run()
        }
        print(results.table())
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(results).write(to: URL(fileURLWithPath: output))
        note("results written to \(output)")
    }

    func note(_ line: String) { FileHandle.standardError.write(Data((line + "\n").utf8)) }

    /// The world of the cached and uncached parts, its store SQLite or on `databaseURL`.
    func withWorld<T: Sendable>(databaseURL: String?, logger: Logger, _ body: (BenchWorld) async throws -> T) async throws -> T {
        try await BenchWorld.withWorld(logger: logger, storeDirectory: storeDir, journal: audit.journalSync, databaseURL: databaseURL, body)
    }

    // MARK: Parts

    /// - Parameter postgres: with `--compare-stores`, the world whose broker is on PostgreSQL; its
    ///   broker takes a turn after (or, every other round, before) `world`'s in each round.
    func cached(_ world: BenchWorld, beside postgres: BenchWorld?) async throws -> [BenchResults.CachedPoint] {
        let deadline: @Sendable () -> Date = { Date().addingTimeInterval(30) }
        let worlds = [world] + (postgres.map { [$0] } ?? [])
        let echo = try world.client(port: world.echo.port, connections: connections)
        var brokers: [FedBrokerClient] = []
        defer {
            let opened = [echo] + brokers
            Task { for client in opened { await client.close() } }
        }
        var blobs: [[UInt8]] = []  // each broker's own: a blob names its emulator's vault
        for each in worlds {
            let broker = try each.client(port: each.broker.port, connections: connections)
            brokers.append(broker)
            let (plaintext, blob, _) = try await broker.generateDataKey(tenant: "customer-1", deadline: deadline())
            guard try await broker.unwrap(blob, deadline: deadline()) == plaintext else { throw BenchError("unwrap returned another key") }
            blobs.append(blob)
        }
        let echoBlob = blobs[0]  // the echo never opens it
        // Two brokers go first in turn, so each goes first equally often: an even number of rounds.
        let rounds = brokers.count > 1 ? self.rounds + self.rounds % 2 : self.rounds
        var points: [BenchResults.CachedPoint] = []
        for level in concurrency {
            note("cached unwrap, concurrency \(level): echo and \(brokers.count == 1 ? "broker" : "the brokers on SQLite and on PostgreSQL"), \(rounds) rounds …")
            var baseline = RawSample()
            var measured = [RawSample](repeating: RawSample(), count: brokers.count)
            var shipping = [Double](repeating: 0, count: brokers.count)
            var sustained = [BenchResults.Sustained](repeating: .init(), count: brokers.count)
            let window = seconds / Double(rounds)
            for round in 0..<rounds {
                baseline = baseline + (await measure(concurrency: level, seconds: window, warmup: window / 4) {
                    _ = try await echo.unwrap(echoBlob, deadline: deadline())
                })
                for index in round % 2 == 0 ? Array(brokers.indices) : brokers.indices.reversed() {
                    let (broker, blob) = (brokers[index], blobs[index])
                    sustained[index] = sustained[index] + (try await BenchResults.Sustained.measuring {
                        let sample = await measure(concurrency: level, seconds: window, warmup: window / 4) {
                            _ = try await broker.unwrap(blob, deadline: deadline())
                        }
                        measured[index] = measured[index] + sample
                        shipping[index] += try await worlds[index].shipped()
                        return sample.answered
                    })
                }
            }
            let compared = brokers.count > 1
            points.append(.init(
                concurrency: level, broker: measured[0].summary, echo: baseline.summary, shippingWaitSeconds: shipping[0], sustained: sustained[0],
                postgres: compared ? measured[1].summary : nil, postgresShippingWaitSeconds: compared ? shipping[1] : nil,
                postgresSustained: compared ? sustained[1] : nil))
        }
        return points
    }

    func uncached(_ world: BenchWorld) async throws -> BenchResults.UncachedResult {
        let broker = try world.client(port: world.broker.port, connections: 1)
        defer { Task { await broker.close() } }
        let deadline: @Sendable () -> Date = { Date().addingTimeInterval(60) }
        note("uncached unwrap: \(uncachedSamples) fresh blobs …")
        var blobs: [[UInt8]] = []
        for _ in 0..<(uncachedSamples + 10) { blobs.append(try await broker.generateDataKey(tenant: "customer-1", deadline: deadline()).blob) }

        // The direct path: the same vault client, token provider and identity the broker uses.
        let customer = world.scenario.customers[0]
        let vault = KeyVaultClient(httpClient: world.http, configuration: .init(environment: world.environment))
        let tokens = CrossTenantTokenProvider(
            exchange: ClientAssertionExchange(authority: world.environment.authorityURL, applicationClientID: world.scenario.appClientID, httpClient: world.http))
        let source = IMDSAssertionSource(clientID: world.scenario.managedIdentities[0].clientId, endpoint: world.environment.imdsURL, httpClient: world.http)
        let token = tokens.vaultTokenProvider(tenantID: customer.tenantID, source: source)
        func direct(_ blob: [UInt8]) async throws {
            let envelope = try WrappedKeyEnvelope(parsing: blob)
            let key = VaultKeyID(vaultURL: envelope.vaultURL, name: envelope.keyName, version: envelope.keyVersion)
            _ = try await vault.unwrapKey(key, wrapped: envelope.wrappedEnvelopeKey, token: token, deadline: deadline(), expectedTenantID: customer.tenantID)
        }
        // Warm both paths (connections, tokens) on blobs not measured.
        for blob in blobs.suffix(10) {
            _ = try await broker.unwrap(blob, deadline: deadline())
            try await direct(blob)
        }
        var viaBroker: [UInt64] = []
        var viaDirect: [UInt64] = []
        for blob in blobs.prefix(uncachedSamples) {
            var start = DispatchTime.now().uptimeNanoseconds
            _ = try await broker.unwrap(blob, deadline: deadline())
            viaBroker.append(DispatchTime.now().uptimeNanoseconds - start)
            start = DispatchTime.now().uptimeNanoseconds
            try await direct(blob)
            viaDirect.append(DispatchTime.now().uptimeNanoseconds - start)
        }
        let total = { (samples: [UInt64]) in Double(samples.reduce(0, +)) / 1e9 }
        return .init(
            broker: LatencySample(nanoseconds: viaBroker, seconds: total(viaBroker), errors: 0),
            direct: LatencySample(nanoseconds: viaDirect, seconds: total(viaDirect), errors: 0))
    }
}
