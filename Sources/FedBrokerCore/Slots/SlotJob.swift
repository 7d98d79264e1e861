import Foundation

/// A slot job's id: `job_` and 32 lowercase hex characters.
public struct SlotJobID: RawRepresentable, Hashable, Comparable, Codable, Sendable, CustomStringConvertible {
    public let rawValue: String

    public init?(rawValue: String) {
        guard rawValue.count == 36, rawValue.hasPrefix("job_"),
            rawValue.dropFirst(4).allSatisfy({ $0.isASCII && ($0.isNumber || ("a"..."f").contains($0)) })
        else { return nil }
        self.rawValue = rawValue
    }

    /// A new random id.
    public static func generate() -> SlotJobID {
        let hex = UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        return SlotJobID(rawValue: "job_" + hex)!
    }

    public var description: String { rawValue }
    public static func < (lhs: SlotJobID, rhs: SlotJobID) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// What an SRE asked for.
public enum SlotJobKind: String, CaseIterable, Hashable, Codable, Sendable {
    /// Create the FIC in Graph, prove the exchange through it, activate the slot.
    case add
    /// Stop placing tenants on a slot and move every tenant it has, each move proven first.
    case drain
    /// Delete an empty, draining slot's FIC once no token issued through it can still be in use.
    case retire
    /// add (the new identity), drain (the old slot into it and the others) and retire, as one job.
    case rotate
}

/// Whether a job still runs.
public enum SlotJobState: String, CaseIterable, Hashable, Codable, Sendable {
    /// Open: a replica holds (or will take) its lease and works through its steps.
    case running
    case succeeded
    /// Stopped at a step that cannot succeed as things are; `message` says why and what to do.
    case failed

    public var isFinished: Bool { self != .running }
}

/// One resumable step. Each is idempotent: a replica that takes over a job after a crash runs
/// the step it finds recorded again, and finding its effect already there counts as done.
public enum SlotJobStep: String, CaseIterable, Hashable, Codable, Sendable {
    /// Create the target slot's FIC in Graph and record the slot as `provisioning`.
    case createCredential = "create_credential"
    /// Exchange an assertion from the new identity through the new FIC (AADSTS70021 is retried
    /// while the FIC may still be propagating).
    case proveCredential = "prove_credential"
    /// Mark the target slot `active`.
    case activate
    /// Mark the source slot `draining`: no new tenant is placed on it.
    case startDrain = "start_drain"
    /// Move the source slot's tenants, each proven through its new slot before it commits.
    case moveTenants = "move_tenants"
    /// Wait until the longest token lifetime has passed since the source slot's last tenant left.
    case awaitTokenExpiry = "await_token_expiry"
    /// Delete the source slot's FIC in Graph.
    case deleteCredential = "delete_credential"
    /// Mark the source slot `retired`.
    case retire
    case done

    /// Whether the step acts on the job's target (new) slot rather than its source slot.
    public var actsOnTarget: Bool { [.createCredential, .proveCredential, .activate].contains(self) }
}

/// A drain's counts, as the API and the progress bar show them.
public struct SlotJobProgress: Hashable, Codable, Sendable {
    /// Tenants on the slot when the move step started (or was resumed).
    public var total: Int
    public var moved: Int
    /// Tenants whose proof failed: they stay where they are.
    public var failed: Int
    /// Tenants not yet tried.
    public var left: Int

    public init(total: Int = 0, moved: Int = 0, failed: Int = 0, left: Int = 0) {
        self.total = total
        self.moved = moved
        self.failed = failed
        self.left = left
    }
}

/// A tenant a drain could not move, and why (bounded, for operators).
public struct SlotJobFailure: Hashable, Codable, Sendable {
    public var tenant: String
    public var reason: String

    public init(tenant: String, reason: String) {
        self.tenant = tenant
        self.reason = String(reason.prefix(256))
    }
}

/// The identity an `add` or `rotate` job brings in.
public struct SlotJobIdentity: Hashable, Codable, Sendable {
    /// The user-assigned managed identity's client id (what IMDS is asked for).
    public var clientID: String
    /// Its principal (object) id: the FIC's subject.
    public var principalID: String

    public init(clientID: String, principalID: String) throws(BrokerError) {
        for (field, value) in [("identity client id", clientID), ("principal id", principalID)] {
            guard Self.isGUID(value) else {
                throw BrokerError(.invalidArgument, "\(field) must be a GUID (8-4-4-4-12 hex digits)")
            }
        }
        self.clientID = clientID.lowercased()
        self.principalID = principalID.lowercased()
    }

    /// Managed identity ids are GUIDs; nothing else reaches Graph or IMDS.
    static func isGUID(_ value: String) -> Bool {
        let parts = value.split(separator: "-", omittingEmptySubsequences: false)
        return parts.map(\.count) == [8, 4, 4, 4, 12] && parts.allSatisfy { $0.allSatisfy { $0.isASCII && $0.isHexDigit } }
    }
}

/// An SRE job on FIC slots, stored as a row so any replica can resume it from its last
/// committed step (a crash loses at most the step in progress, which is idempotent).
public struct SlotJob: Hashable, Sendable {
    public let id: SlotJobID
    public let kind: SlotJobKind
    public var state: SlotJobState
    public var step: SlotJobStep
    /// The slot drained and retired (drain, retire, rotate).
    public let sourceSlot: FICSlotID?
    /// The slot created and activated (add, rotate).
    public let targetSlot: FICSlotID?
    public let targetIdentity: SlotJobIdentity?
    public var progress: SlotJobProgress
    public var failures: [SlotJobFailure]
    /// The latest status line ("waiting for the FIC to propagate (attempt 3)"), bounded.
    public var message: String
    public let createdBy: String
    public let createdAt: Date
    public var updatedAt: Date
    public var finishedAt: Date?
    /// When the source slot's last tenant left (the retire wait counts from here).
    public var drainedAt: Date?
    public var version: RecordVersion

    public init(
        id: SlotJobID, kind: SlotJobKind, state: SlotJobState = .running, step: SlotJobStep, sourceSlot: FICSlotID?,
        targetSlot: FICSlotID?, targetIdentity: SlotJobIdentity?, progress: SlotJobProgress = .init(),
        failures: [SlotJobFailure] = [], message: String = "", createdBy: String, createdAt: Date, updatedAt: Date,
        finishedAt: Date? = nil, drainedAt: Date? = nil, version: RecordVersion = .initial
    ) {
        self.id = id
        self.kind = kind
        self.state = state
        self.step = step
        self.sourceSlot = sourceSlot
        self.targetSlot = targetSlot
        self.targetIdentity = targetIdentity
        self.progress = progress
        self.failures = failures
        self.message = message
        self.createdBy = createdBy
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.finishedAt = finishedAt
        self.drainedAt = drainedAt
        self.version = version
    }

    /// At most this many failures are kept on the job (the audit trail has every one).
    public static let maximumRecordedFailures = 100
}
