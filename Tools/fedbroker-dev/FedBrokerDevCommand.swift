import ArgumentParser

/// `fedbroker-dev`: the developer executable. It carries what must never reach production: the
/// Azure emulator (a token issuer that signs whatever it is told to), the demo that drives the
/// production binary against it, and the benchmarks. The container image ships `fedbroker` only
/// (deploy/Dockerfile).
@main
struct FedBrokerDevCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fedbroker-dev",
        abstract: "Developer tools for fedbroker: the demo, the Azure emulator, the benchmark. Not for production.",
        discussion: """
            Start with the demo: it runs the emulator and the production `fedbroker` binary side by side \
            and tells the product's story with real calls (swift run fedbroker-dev demo).
            """,
        subcommands: [DemoCommand.self, EmulatorCommand.self, BenchCommand.self, AuditLoadCommand.self]
    )
}
