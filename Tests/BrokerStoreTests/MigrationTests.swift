import FedBrokerCore
import Foundation
import Testing

@testable import BrokerStore

@Suite struct MigrationTests {
    @Test("A fresh database gets every migration; a second run is a no-op", arguments: StoreKind.allCases)
    func freshThenRerun(kind: StoreKind) async throws {
        try await withStore(kind, migrate: false) { store, _ in
            let first = try await store.migrate()
            #expect(first.previousVersion == 0)
            #expect(first.applied == ["0001_init.sql", "0002_onboarding.sql", "0003_slot_jobs.sql", "0004_access_recovery.sql", "0005_key_access_changed_at.sql"])
            #expect(first.currentVersion == EmbeddedMigrations.latestVersion(for: kind == .postgres ? .postgres : .sqlite))
            let second = try await store.migrate()
            #expect(second.applied.isEmpty)
            #expect(second.previousVersion == first.currentVersion)
            // The schema works.
            #expect(try await store.tenants().isEmpty)
        }
    }

    @Test("Replicas migrating at once: exactly one applies, the others find nothing to do", arguments: StoreKind.allCases)
    func concurrentMigrations(kind: StoreKind) async throws {
        try await withStore(kind, migrate: false) { _, database in
            let reports = try await withReplicas(4, of: database) { stores in
                try await withThrowingTaskGroup(of: MigrationReport.self) { group in
                    for store in stores { group.addTask { try await store.migrate() } }
                    return try await group.reduce(into: []) { $0.append($1) }
                }
            }
            #expect(reports.filter { !$0.applied.isEmpty }.count == 1)
            #expect(reports.allSatisfy { $0.currentVersion == 5 })
        }
    }

    @Test("A replica without DDL rights (store.migrateOnStart false) refuses an unmigrated schema and accepts a current one",
          arguments: StoreKind.allCases)
    func schemaCheckWithoutMigrating(kind: StoreKind) async throws {
        try await withStore(kind, migrate: false) { store, _ in
            await expectBrokerError(.schemaBehind) { _ = try await store.verifySchemaIsCurrent() }
            // What the migration job does, then the replica's check passes without applying anything.
            let report = try await store.migrate()
            #expect(try await store.verifySchemaIsCurrent() == report.currentVersion)
            try await store.executeForTesting("DELETE FROM fedbroker_schema_migrations WHERE version = \(report.currentVersion)")
            await expectBrokerError(.schemaBehind) { _ = try await store.verifySchemaIsCurrent() }
        }
    }

    @Test("A database migrated by a newer fedbroker is refused with schemaTooNew, by migrate and by open",
          arguments: StoreKind.allCases)
    func newerSchemaRefused(kind: StoreKind) async throws {
        try await withStore(kind) { store, database in
            try await store.executeForTesting(
                """
                INSERT INTO fedbroker_schema_migrations (version, file, checksum, applied_at_us)
                VALUES (9999, '9999_future.sql', 'x', 0)
                """)
            await expectBrokerError(.schemaTooNew) { _ = try await store.migrate() }
            do {
                _ = try await store.migrate()
            } catch let error as BrokerError {
                #expect(error.message.contains("9999"), "the message names the database's version")
            }
            await expectBrokerError(.schemaTooNew) { _ = try await database.open() }
        }
    }

    @Test("A migration changed after it was applied is refused (sha256 per applied migration)",
          arguments: StoreKind.allCases)
    func changedMigrationRefused(kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            try await store.executeForTesting("UPDATE fedbroker_schema_migrations SET checksum = 'edited' WHERE version = 1")
            await expectBrokerError(.migrationFailed) { _ = try await store.migrate() }
        }
    }

    @Test("The applied set must be a prefix of the binary's list; checksums must match")
    func appliedSetChecks() throws {
        let known = [
            Migration(version: 1, file: "0001_a.sql", sql: "CREATE TABLE a (x INT)"),
            Migration(version: 2, file: "0002_b.sql", sql: "CREATE TABLE b (x INT)"),
            Migration(version: 3, file: "0003_c.sql", sql: "CREATE TABLE c (x INT)"),
        ]
        try Migration.checkApplied([], against: known)
        try Migration.checkApplied([(1, known[0].checksum), (2, known[1].checksum)], against: known)
        #expect(throws: BrokerError(.migrationFailed, "")) {
            try Migration.checkApplied([(1, known[0].checksum), (3, known[2].checksum)], against: known)  // a gap
        }
        #expect(throws: BrokerError(.migrationFailed, "")) {
            try Migration.checkApplied([(2, known[1].checksum)], against: known)
        }
        #expect(throws: BrokerError(.migrationFailed, "")) {
            try Migration.checkApplied([(1, "0000")], against: known)
        }
        #expect(throws: BrokerError(.schemaTooNew, "")) {
            try Migration.checkApplied([(4, "x")], against: known)
        }
        #expect(known[0].checksum.count == 64)
    }

    @Test("Migration statements are sent verbatim: `?` and `--` inside literals survive; comment-only chunks are skipped")
    func statementsVerbatim() {
        let migration = Migration(
            version: 1, file: "0001_x.sql",
            sql: """
                -- header comment
                INSERT INTO t (v) VALUES ('what? -- not a comment; it''s text');
                CREATE TABLE u (x INT); -- trailing; with a semicolon
                -- only a comment
                """)
        #expect(migration.statements == [
            "-- header comment\nINSERT INTO t (v) VALUES ('what? -- not a comment; it''s text')",
            "CREATE TABLE u (x INT)",
        ])
    }

    @Test("A migration statement reaches PostgreSQL without placeholder rewriting")
    func postgresVerbatim() async throws {
        try await withStore(.postgres) { store, _ in
            try await store.backend.withTransaction { session in
                try await session.execute("CREATE TABLE verbatim_probe (v TEXT DEFAULT 'a?b')")
                try await session.execute("INSERT INTO verbatim_probe DEFAULT VALUES")
            }
            let value = try await store.backend.withReadTransaction { session in
                try await session.query("SELECT v FROM verbatim_probe", []).first?.text("v")
            }
            #expect(value == "a?b")
        }
    }

    @Test("The SQL compiled into the binary is exactly sql/ (rerun scripts/generate-migrations.sh)")
    func embeddedMatchesSource() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        for (dialect, folder) in [(SQLDialect.postgres, "postgres"), (.sqlite, "sqlite")] {
            let directory = root.appendingPathComponent("sql/\(folder)")
            let files = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".sql") }.sorted()
            let embedded = EmbeddedMigrations.migrations(for: dialect)
            #expect(embedded.map(\.file) == files)
            for migration in embedded {
                let source = try String(contentsOf: directory.appendingPathComponent(migration.file), encoding: .utf8)
                #expect(
                    migration.sql.trimmingCharacters(in: .whitespacesAndNewlines)
                        == source.trimmingCharacters(in: .whitespacesAndNewlines),
                    "\(folder)/\(migration.file) differs from the generated constant")
            }
        }
    }

    @Test("Both dialects end with the same tables")
    func dialectsAgree() {
        /// The tables left after every migration: created, dropped and renamed in order (SQLite
        /// rebuilds a table to change a constraint, through a transient table of another name).
        func tables(_ dialect: SQLDialect) -> [String] {
            var tables: Set<String> = []
            for statement in EmbeddedMigrations.migrations(for: dialect).flatMap(\.statements) {
                let code = statement.split(separator: "\n").filter { !$0.trimmingCharacters(in: .whitespaces).hasPrefix("--") }
                    .joined(separator: "\n")
                let words = code.split(whereSeparator: { $0 == " " || $0 == "\n" }).map { $0.lowercased() }
                switch (words.first, words.dropFirst().first) {
                case ("create", "table"): tables.insert(words[2])
                case ("drop", "table"): tables.remove(words[2])
                case ("alter", "table") where words.count >= 6 && words[3] == "rename" && words[4] == "to":
                    tables.remove(words[2])
                    tables.insert(words[5])
                default: break
                }
            }
            return tables.sorted()
        }
        #expect(tables(.postgres) == tables(.sqlite))
        #expect(
            tables(.postgres)
                == ["audit_records", "callers", "change_feed", "fic_slots", "replicas", "slot_jobs", "tenant_access_probes", "tenant_onboarding", "tenants"])
    }
}

extension Sequence where Element: Sendable {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var result: [T] = []
        for element in self { result.append(try await transform(element)) }
        return result
    }
}
