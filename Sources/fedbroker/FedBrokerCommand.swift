import ArgumentParser

/// `fedbroker`: the production binary. It serves, migrates, and is the staff's and SREs' CLI; it
/// links no emulator, so no token issuer that signs whatever it is told to ships to production.
/// The emulator, the demo and the benchmark are `fedbroker-dev` (Tools/fedbroker-dev).
@main
struct FedBrokerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fedbroker",
        abstract: "Cross-tenant customer-managed-key broker for Azure Key Vault.",
        discussion: """
            fedbroker turns an ISV's managed identities, trusted as federated identity credentials of one \
            multi-tenant application, into wrap/unwrap operations on keys in customers' own vaults.
            """,
        subcommands: [ServeCommand.self, TenantCommand.self, CallerCommand.self, SlotCommand.self, AuditCommand.self, ClientCommand.self, ProbeCommand.self, MigrateCommand.self]
    )
}
