import FedBrokerCore
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Audit records the database rejected, kept on disk: `audit-quarantine.jsonl` in a directory,
/// one JSON object a line, appended, fsynced, mode 0600.
///
/// Why a file and not a table: the database just refused these records (a constraint, a value
/// it cannot store), so another table of the same database is the place least likely to take
/// them; and a file survives the process that held them in memory (invariant 4). Records hold
/// no secrets, and every text field is already bounded and escaped by `AuditRecord`, so a line
/// stays small whatever a caller sent. Replicas sharing the directory append whole lines
/// (`O_APPEND`, one `write` each).
///
/// An operator re-inserts the lines once the cause is fixed (docs/store.md, "Quarantine").
struct AuditQuarantineFile: Sendable {
    static let fileName = "audit-quarantine.jsonl"

    let directory: String
    let path: String

    init(directory: String) {
        self.directory = directory
        self.path = (directory as NSString).appendingPathComponent(Self.fileName)
    }

    /// One line as written: the record's fields, why it was rejected, and when.
    struct Line: Codable, Equatable {
        var id: String
        var time: String
        var actor: String
        var tenant: String?
        var operation: String
        var keyVersion: String?
        var outcome: String
        var errorCode: String?
        var latencyMicroseconds: Int64
        var requestID: String?
        var clientRequestID: String?
        var detail: String?
        /// The store's code for the rejection (`invalid_data`) and its message.
        var rejection: String
        var rejectionMessage: String
        var quarantinedAt: String
    }

    static func line(_ record: AuditRecord, rejection: BrokerError, at time: Date) -> Line {
        let (outcome, code): (String, String?) =
            switch record.outcome {
            case .success: ("success", nil)
            case .failure(let code): ("failure", code)
            }
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return Line(
            id: record.id.lowercaseText, time: formatter.string(from: record.time), actor: record.actor,
            tenant: record.tenantID?.rawValue, operation: record.operation, keyVersion: record.keyVersion, outcome: outcome,
            errorCode: code, latencyMicroseconds: record.latencyMicroseconds, requestID: record.requestID,
            clientRequestID: record.clientRequestID, detail: record.detail, rejection: rejection.code.rawValue,
            rejectionMessage: BoundedText.escaped(rejection.message, maximumBytes: 256),
            quarantinedAt: formatter.string(from: time))
    }

    /// Appends the record as one line and fsyncs it; creates the directory (0700) and the file
    /// (0600) when missing, and narrows an existing file to 0600.
    func append(_ record: AuditRecord, rejection: BrokerError, at time: Date) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var bytes = Array(try encoder.encode(Self.line(record, rejection: rejection, at: time)))
        bytes.append(UInt8(ascii: "\n"))

        try FileManager.default.createDirectory(
            atPath: self.directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let existed = FileManager.default.fileExists(atPath: self.path)
        let fd = open(self.path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw Self.failure("open", errno) }
        defer { close(fd) }
        guard fchmod(fd, 0o600) == 0 else { throw Self.failure("chmod", errno) }
        var written = 0
        while written < bytes.count {
            let n = bytes[written...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw Self.failure("write", errno)
            }
            written += n
        }
        guard fsync(fd) == 0 else { throw Self.failure("fsync", errno) }
        // A new file's name must survive a crash as well as its contents.
        if !existed {
            let directoryFD = open(self.directory, O_RDONLY | O_CLOEXEC)
            if directoryFD >= 0 {
                _ = fsync(directoryFD)
                close(directoryFD)
            }
        }
    }

    private static func failure(_ step: String, _ code: Int32) -> BrokerError {
        BrokerError(.storeFailure, "cannot \(step) the audit quarantine file: \(String(cString: strerror(code)))")
    }
}
