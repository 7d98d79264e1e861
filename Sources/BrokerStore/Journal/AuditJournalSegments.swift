import Foundation

/// The journal's files: `audit-<sequence>.wal` segments in one directory (mode 0700), each
/// starting with an 8-byte header and holding records one after the other. Sequence numbers
/// order the segments; a new process always starts a new one, so a segment is appended to by one
/// process only and a torn tail is never written after.
///
/// Plain POSIX calls: the journal is a few files, written by one thread with `write` and
/// `fdatasync`; there is nothing here a library would do better.
enum AuditJournalSegments {
    static let header: [UInt8] = Array("FBAUDJ01".utf8)
    static let suffix = ".wal"
    static let damagedSuffix = ".damaged"

    struct Failure: Error, CustomStringConvertible {
        var description: String
        init(_ operation: String, _ path: String, errno code: Int32 = errno) {
            description = "\(operation) \(path): \(String(cString: strerror(code)))"
        }
        init(message: String) { description = message }
    }

    static func name(_ sequence: UInt64) -> String {
        let digits = String(sequence)
        return "audit-" + String(repeating: "0", count: max(0, 16 - digits.count)) + digits + suffix
    }

    static func sequence(ofName name: String) -> UInt64? {
        guard name.hasPrefix("audit-"), name.hasSuffix(suffix) else { return nil }
        let digits = name.dropFirst("audit-".count).dropLast(suffix.count)
        guard digits.count == 16, digits.allSatisfy(\.isASCII), digits.allSatisfy(\.isNumber) else { return nil }
        return UInt64(digits)
    }

    /// The directory, made owner-only if missing; refused if it is not a directory.
    static func prepare(directory: String) throws {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else { throw Failure(message: "the audit journal path \(directory) is not a directory") }
            return
        }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    }

    /// Takes the directory for this process (an exclusive `flock` on `LOCK`, held until the
    /// descriptor is closed or the process dies): two processes appending to one journal would
    /// interleave segments and ship each other's records.
    static func lock(directory: String) throws -> Int32 {
        let path = directory + "/LOCK"
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw Failure("cannot open", path) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let code = errno
            close(fd)
            if code == EWOULDBLOCK {
                throw Failure(
                    message: "the audit journal \(directory) is in use by another fedbroker process; give each replica its own audit.journalDirectory")
            }
            throw Failure("cannot lock", path, errno: code)
        }
        return fd
    }

    /// Existing segments, oldest first, with their sizes.
    static func existing(in directory: String) throws -> [(sequence: UInt64, size: Int)] {
        try FileManager.default.contentsOfDirectory(atPath: directory).compactMap { name -> (UInt64, Int)? in
            guard let sequence = sequence(ofName: name) else { return nil }
            let size = (try? FileManager.default.attributesOfItem(atPath: directory + "/" + name)[.size] as? Int) ?? 0
            return (sequence, size ?? 0)
        }.sorted { $0.0 < $1.0 }
    }

    /// A new segment with its header, synced, and the directory synced so its name survives a crash.
    static func create(_ sequence: UInt64, in directory: String) throws -> Int32 {
        let path = directory + "/" + name(sequence)
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw Failure("cannot create", path) }
        do {
            try writeAll(fd, header, path: path)
            guard fdatasync(fd) == 0 else { throw Failure("cannot sync", path) }
            try syncDirectory(directory)
        } catch {
            close(fd)
            unlink(path)
            throw error
        }
        return fd
    }

    static func writeAll(_ fd: Int32, _ bytes: [UInt8], path: String) throws {
        try bytes.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let written = write(fd, buffer.baseAddress! + offset, buffer.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    throw Failure("cannot write", path)
                }
                offset += written
            }
        }
    }

    static func syncDirectory(_ directory: String) throws {
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw Failure("cannot open", directory) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw Failure("cannot sync", directory) }
    }

    /// Up to `maximum` bytes of the segment from `offset`.
    static func read(_ path: String, from offset: Int, maximum: Int) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw Failure("cannot open", path) }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: maximum)
        var filled = 0
        try bytes.withUnsafeMutableBytes { buffer in
            while filled < maximum {
                let got = pread(fd, buffer.baseAddress! + filled, maximum - filled, off_t(offset + filled))
                if got < 0 {
                    if errno == EINTR { continue }
                    throw Failure("cannot read", path)
                }
                if got == 0 { break }
                filled += got
            }
        }
        bytes.removeSubrange(filled...)
        return bytes
    }
}
