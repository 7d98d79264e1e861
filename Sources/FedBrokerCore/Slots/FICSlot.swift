import Foundation

/// A federated identity credential slot's name: the FIC's `name` on the application, which Graph
/// restricts to 3-120 characters of `[A-Za-z0-9_-]` and which is unique per application.
public struct FICSlotID: RawRepresentable, Hashable, Comparable, Codable, Sendable, CustomStringConvertible {
    public let rawValue: String

    public init?(rawValue: String) {
        guard (3...120).contains(rawValue.count),
            rawValue.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") })
        else { return nil }
        self.rawValue = rawValue
    }

    public init(validating rawValue: String) throws {
        guard let id = FICSlotID(rawValue: rawValue) else {
            throw BrokerError(.invalidArgument, "slot name must be 3-120 characters of [A-Za-z0-9_-]")
        }
        self = id
    }

    public var description: String { self.rawValue }
    public static func < (lhs: FICSlotID, rhs: FICSlotID) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// The identity behind a slot: a user-assigned managed identity in the ISV's tenant, trusted by the
/// application through one federated identity credential (issuer + subject + audience).
public struct FICSlotIdentity: Hashable, Sendable {
    /// The multi-tenant application (client id) this FIC belongs to; the 20-slot limit is per application.
    public var applicationID: String
    /// The managed identity's client id, what IMDS is asked for.
    public var managedIdentityClientID: String
    /// The managed identity's principal (object) id, the FIC's `subject`.
    public var managedIdentityPrincipalID: String
    public var issuer: String
    public var subject: String
    public var audience: String

    public init(
        applicationID: String, managedIdentityClientID: String, managedIdentityPrincipalID: String, issuer: String,
        subject: String, audience: String = "api://AzureADTokenExchange"
    ) throws {
        for (field, value) in [
            ("application id", applicationID), ("managed identity client id", managedIdentityClientID),
            ("managed identity principal id", managedIdentityPrincipalID), ("issuer", issuer), ("subject", subject),
            ("audience", audience),
        ] where value.isEmpty || value.count > 600 {
            throw BrokerError(.invalidArgument, "\(field) must be 1-600 characters")
        }
        self.applicationID = applicationID
        self.managedIdentityClientID = managedIdentityClientID
        self.managedIdentityPrincipalID = managedIdentityPrincipalID
        self.issuer = issuer
        self.subject = subject
        self.audience = audience
    }
}

/// A FIC slot as stored.
public struct FICSlot: Hashable, Sendable {
    /// Entra allows at most 20 federated identity credentials per application; retired slots have
    /// had theirs deleted and do not count.
    public static let maximumNonRetiredPerApplication = 20

    public let id: FICSlotID
    public let identity: FICSlotIdentity
    public var state: FICSlotState
    public let createdAt: Date
    public var updatedAt: Date
    public var version: RecordVersion

    public init(
        id: FICSlotID, identity: FICSlotIdentity, state: FICSlotState, createdAt: Date, updatedAt: Date,
        version: RecordVersion
    ) {
        self.id = id
        self.identity = identity
        self.state = state
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.version = version
    }

    /// Throws `slotLimitReached` if an application that has `nonRetiredCount` slots may not get another.
    /// The store calls this under its per-application lock, so concurrent creations cannot both pass.
    public static func checkCanCreate(nonRetiredCount: Int) throws(BrokerError) {
        guard nonRetiredCount < Self.maximumNonRetiredPerApplication else {
            throw BrokerError(
                .slotLimitReached,
                "the application already has \(nonRetiredCount) of \(Self.maximumNonRetiredPerApplication) federated identity credential slots"
            )
        }
    }
}
