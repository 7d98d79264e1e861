/// The staff member behind a request, from their validated token (or the local socket).
public struct StaffPrincipal: Hashable, Sendable {
    /// The user's object id in the ISV's tenant (`oid`).
    public var objectID: String
    /// Their display name (`name`), bounded and stripped of control characters.
    public var name: String
    public var roles: Set<AdminRole>

    public init(objectID: String, name: String, roles: Set<AdminRole>) {
        self.objectID = objectID
        self.name = name
        self.roles = roles
    }

    /// How admin actions name this person in the audit trail.
    public var auditActor: String { "staff:\(self.objectID) (\(self.name))" }

    public func satisfies(_ requirement: AdminRequirement) -> Bool {
        switch requirement {
        case .none: true
        case .anyStaff: !self.roles.isEmpty
        case .role(let role): self.roles.contains(role)
        }
    }

    /// The principal of the request being handled (set by the authentication middleware).
    @TaskLocal public static var current: StaffPrincipal?
}
