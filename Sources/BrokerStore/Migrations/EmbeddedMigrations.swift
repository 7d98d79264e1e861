import Foundation

/// One numbered schema migration, as shipped inside the binary.
struct Migration: Hashable, Sendable {
    /// The number in the file name (`0001_init.sql` is 1).
    let version: Int
    let file: String
    let sql: String

    /// The statements of the file, one per `;`. Migration files keep to plain DDL (no functions,
    /// triggers or semicolons inside literals), which is what makes this simple split safe.
    var statements: [String] {
        let withoutComments = self.sql.split(separator: "\n", omittingEmptySubsequences: false)
            .map { line -> Substring in
                guard let range = line.range(of: "--") else { return line }
                return line[..<range.lowerBound]
            }
            .joined(separator: "\n")
        return withoutComments.split(separator: ";")
            .map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
            .filter { !$0.isEmpty }
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
