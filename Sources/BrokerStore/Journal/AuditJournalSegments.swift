import Foundation

/// The journal's files: `audit-<sequence>.wal` segments in one directory (mode 0700), each
/// starting with an 8-byte header and holding records one after the other. Sequence numbers
/// order the segments; a new process always starts a new one, so a segment is appended to by one
/// process only and a torn tail is never written after.
///
/// Segments are preallocated: made at their full size, zeros after the header, before any record
/// is written to them (see `fill`). Records are written after the last one; zeros from a record's
/// boundary to the end of the file mark where writing stopped.
///
/// Plain POSIX calls: the journal is a few files, written by one thread with `pwrite` and
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
            return (sequence, size)
        }.sorted { $0.0 < $1.0 }
    }

    /// A new segment with its header, `preallocated` bytes long (zeros after the header; see
    /// `fill`), synced, and the directory synced so its name survives a crash. Made under a
    /// scratch name and renamed, so a crash of the host mid-fill leaves no segment without its
    /// header (which would read as damage).
    static func create(_ sequence: UInt64, in directory: String, preallocated: Int) throws -> Int32 {
        let scratch = "audit-\(sequence).tmp"
        let fd = try createScratch(scratch, in: directory, preallocated: preallocated)
        try install(fd, from: scratch, as: sequence, in: directory)
        return fd
    }

    /// A segment-to-be under a scratch name (`audit-*.tmp`, never shipped; the next start removes
    /// any left): the header, then zeros to `preallocated` bytes, synced.
    static func createScratch(_ scratch: String, in directory: String, preallocated: Int) throws -> Int32 {
        let path = directory + "/" + scratch
        unlink(path)
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw Failure("cannot create", path) }
        do {
            try fill(fd, to: preallocated, path: path)
        } catch {
            discard(fd, scratch, in: directory)
            throw error
        }
        return fd
    }

    /// Gives a scratch segment its segment name, and syncs the directory so the name survives a
    /// crash. On failure the file is closed and removed under whichever name it has, so the
    /// sequence stays free for the next try.
    static func install(_ fd: Int32, from scratch: String, as sequence: UInt64, in directory: String) throws {
        let path = directory + "/" + name(sequence)
        guard rename(directory + "/" + scratch, path) == 0 else {
            let failure = Failure("cannot rename \(scratch) to", path)
            discard(fd, scratch, in: directory)
            throw failure
        }
        do {
            try syncDirectory(directory)
        } catch {
            discard(fd, name(sequence), in: directory)
            throw error
        }
    }

    /// Closes a segment file not (or no longer) wanted and removes it.
    static func discard(_ fd: Int32, _ name: String, in directory: String) {
        close(fd)
        unlink(directory + "/" + name)
    }

    /// Removes scratch segments an earlier process left (a crash mid-fill, or its spare).
    static func removeScratch(in directory: String) {
        for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] where name.hasPrefix("audit-") && name.hasSuffix(".tmp") {
            unlink(directory + "/" + name)
        }
    }

    /// Writes the header and zeros up to `size` bytes, then `fdatasync`s. A segment written
    /// over blocks that already hold data syncs without a filesystem journal commit for its
    /// growing size (about half the `fdatasync` time of an appended file on ext4), the way
    /// PostgreSQL zero-fills its WAL segments. The zeros after the last record read as the
    /// segment's end (`AuditJournalRecord.endsInZeros`).
    private static func fill(_ fd: Int32, to size: Int, path: String) throws {
        try writeAll(fd, header, at: 0, path: path)
        let zeros = [UInt8](repeating: 0, count: 256 * 1024)
        var offset = header.count
        while offset < size {
            let chunk = min(zeros.count, size - offset)
            try writeAll(fd, chunk == zeros.count ? zeros : Array(zeros[..<chunk]), at: offset, path: path)
            offset += chunk
        }
        guard fdatasync(fd) == 0 else { throw Failure("cannot sync", path) }
    }

    /// Writes all of `bytes` at `offset` (segments are written at the end of their records, not
    /// at the end of the file, which a preallocated segment has far beyond them).
    static func writeAll(_ fd: Int32, _ bytes: [UInt8], at offset: Int, path: String) throws {
        try bytes.withUnsafeBytes { buffer in
            guard let base = buffer.baseAddress else { return }
            var done = 0
            while done < buffer.count {
                let written = pwrite(fd, base + done, buffer.count - done, off_t(offset + done))
                if written < 0 {
                    if errno == EINTR { continue }
                    throw Failure("cannot write", path)
                }
                done += written
            }
        }
    }

    /// Whether the file holds only zeros from `offset` to `end` (a preallocated segment's unused
    /// rest); read in bounded windows.
    static func zeros(_ path: String, from offset: Int, to end: Int) throws -> Bool {
        var position = offset
        while position < end {
            let window = try read(path, from: position, maximum: min(end - position, 1 << 20))
            guard !window.isEmpty else { return true }
            guard window.allSatisfy({ $0 == 0 }) else { return false }
            position += window.count
        }
        return true
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
