/// The result of a registration: the tenant, and whether this call created it (false when an
/// earlier request with the same idempotency key did).
public struct RegistrationResult: Hashable, Sendable {
    public var tenant: Tenant
    public var onboarding: TenantOnboarding
    public var created: Bool

    public init(tenant: Tenant, onboarding: TenantOnboarding, created: Bool) {
        self.tenant = tenant
        self.onboarding = onboarding
        self.created = created
    }
}
