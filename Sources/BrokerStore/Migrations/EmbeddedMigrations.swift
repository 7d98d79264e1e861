import Crypto
import FedBrokerCore
import Foundation

/// One numbered schema migration, as shipped inside the binary.
struct Migration: Hashable, Sendable {
    /// The number in the file name (`0001_init.sql` is 1).
    let version: Int
    let file: String
    let sql: String

    /// The statements of the file, each sent verbatim (comments, `?` and `--` inside literals
    /// included). The split is on `;` outside single-quoted literals, double-quoted identifiers and
    /// `--` comments; dollar-quoted bodies and block comments are not supported in migration
    /// files. Chunks that are only comments are skipped.
    var statements: [String] {
        enum State { case code, literal, identifier, comment }
        var state = State.code
        var statements: [String] = []
        var current = ""
        var previous: Character = " "
        for character in self.sql {
            switch state {
            case .code:
                if character == ";" {
                    statements.append(current)
                    current = ""
                    previous = " "
                    continue
                }
                if character == "'" { state = .literal }
                if character == "\"" { state = .identifier }
                if character == "-", previous == "-" { state = .comment }
            case .literal:
                if character == "'" { state = .code }  // '' re-enters .literal on the next quote
            case .identifier:
                if character == "\"" { state = .code }
            case .comment:
                if character == "\n" { state = .code }
            }
            current.append(character)
            previous = character
        }
        statements.append(current)
        return statements
            .map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
            .filter { chunk in
                chunk.split(separator: "\n").contains { line in
                    let trimmed = line.trimmingCharacters(in: .whitespaces)
                    return !trimmed.isEmpty && !trimmed.hasPrefix("--")
                }
            }
    }

    /// SHA-256 of the file, hex: recorded when applied, compared on every later run.
    var checksum: String {
        SHA256.hash(data: Data(self.sql.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    /// Checks what the database says was applied against this binary's list.
    ///
    /// - Throws: `schemaTooNew` when the database has a version this binary does not know past its
    ///   newest; `migrationFailed` when the applied versions are not a prefix of the list, or an
    ///   applied file's checksum differs from the binary's.
    static func checkApplied(_ applied: [(version: Int, checksum: String)], against known: [Migration]) throws {
        let latest = known.last?.version ?? 0
        let sorted = applied.sorted { $0.version < $1.version }
        if let newest = sorted.last?.version, newest > latest {
            throw BrokerError(
                .schemaTooNew,
                "the database schema is version \(newest) but this fedbroker only knows up to \(latest); upgrade fedbroker")
        }
        guard sorted.count <= known.count, zip(sorted, known).allSatisfy({ $0.version == $1.version }) else {
            throw BrokerError(
                .migrationFailed,
                "the applied migrations \(sorted.map(\.version)) are not a prefix of this binary's \(known.map(\.version))")
        }
        for (row, migration) in zip(sorted, known) where row.checksum != migration.checksum {
            throw BrokerError(
                .migrationFailed,
                "migration \(migration.file) was changed after it was applied (checksum \(row.checksum.prefix(12))…, "
                    + "this binary has \(migration.checksum.prefix(12))…)")
        }
    }
}

/// The migrations compiled into this binary (generated from sql/ by scripts/generate-migrations.sh).
enum EmbeddedMigrations {
    static func migrations(for dialect: SQLDialect) -> [Migration] {
        let files = dialect == .postgres ? Self.postgresFiles : Self.sqliteFiles
        return files.map { entry in
            let digits = entry.file.prefix { $0.isNumber }
            guard let version = Int(digits) else {
                preconditionFailure("migration file \(entry.file) must start with its number")
            }
            return Migration(version: version, file: entry.file, sql: entry.sql)
        }
        .sorted { $0.version < $1.version }
    }

    /// The newest schema version this binary knows.
    static func latestVersion(for dialect: SQLDialect) -> Int {
        Self.migrations(for: dialect).last?.version ?? 0
    }
}
