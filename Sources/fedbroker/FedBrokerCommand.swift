import ArgumentParser

/// `fedbroker`: the broker's single binary. Subcommands arrive with their issues; today it
/// runs the Azure emulator every test, demo and benchmark stands on.
@main
struct FedBrokerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fedbroker",
        abstract: "Cross-tenant customer-managed-key broker for Azure Key Vault.",
        discussion: """
            fedbroker turns an ISV's managed identities, trusted as federated identity credentials of one \
            multi-tenant application, into wrap/unwrap operations on keys in customers' own vaults.
            """,
        subcommands: [ServeCommand.self, TenantCommand.self, CallerCommand.self, SlotCommand.self, AuditCommand.self, ClientCommand.self, EmulatorCommand.self, ProbeCommand.self, MigrateCommand.self, BenchCommand.self, AuditLoadCommand.self]
    )
}
