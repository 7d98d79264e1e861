import ArgumentParser
import AsyncHTTPClient
import AzureHTTP
import AzureIdentity
import FedBrokerCore
import Foundation
import KeyVault

/// `fedbroker probe`: walk the chain for one customer key and say precisely what is wrong.
struct ProbeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "probe",
        abstract: "Check one customer key end to end: assertion, exchange, key, checks, wrap + unwrap.",
        discussion: """
            Runs the trust chain step by step for a customer's key and prints each step with its outcome \
            and latency; on failure, the classified cause, who must act and what to do. Exits 0 only when \
            every step, the wrap/unwrap round trip included, succeeded; 1 when a step failed; 64 for bad usage.

            Against the emulator: . STATE_DIR/env.sh && fedbroker probe --tenant "$FEDBROKER_EMU_C1_TENANT_ID" \\
              --vault-url "$FEDBROKER_EMU_C1_VAULT_URL" --key "$FEDBROKER_EMU_C1_KEY_NAME" --identity "${FEDBROKER_EMU_MI_CLIENT_IDS%%,*}"
            """
    )

    @Option(name: .long, help: "The customer's Entra tenant id.")
    var tenant: String

    @Option(name: .long, help: "The vault URL (https://NAME.vault.azure.net), or the key's full kid.")
    var vaultURL: String

    @Option(name: .long, help: "The key name (optional when --vault-url is a kid).")
    var key: String?

    @Option(name: .long, help: "Key version to pin (default: the current version).")
    var version: String?

    @Option(name: .long, help: "Client id of the user-assigned managed identity (the FIC slot) to use.")
    var identity: String?

    @Option(name: .long, help: "Use a federated token file (AKS workload identity) instead of IMDS.")
    var federatedTokenFile: String?

    @Option(name: .long, help: "Seconds the whole probe may take.")
    var timeout: Double = 30

    @Flag(name: .long, help: "Print one JSON document instead of text.")
    var json = false

    @OptionGroup var azure: AzureOptions

    func validate() throws {
        guard (identity == nil) != (federatedTokenFile == nil) else {
            throw ValidationError("Give exactly one of --identity CLIENT_ID or --federated-token-file PATH.")
        }
        guard keyID != nil else { throw ValidationError("Give --key NAME, or a full kid as --vault-url.") }
        guard UUID(uuidString: tenant) != nil else {
            throw ValidationError("--tenant must be the tenant id (a GUID), not a domain name: the vault's challenge names tenants by id.")
        }
        guard URL(string: vaultURL)?.scheme == "https" else { throw ValidationError("--vault-url must be an https URL.") }
        guard timeout > 0 else { throw ValidationError("--timeout must be positive.") }
    }

    var keyID: VaultKeyID? {
        if let key { return VaultKeyID(vaultURL: vaultURL, name: key, version: version) }
        return VaultKeyID(kid: vaultURL)
    }

    func run() async throws {
        let environment = azure.resolve()
        let http = try environment.makeHTTPClient()
        let source: any AssertionSource =
            if let identity { IMDSAssertionSource(clientID: identity, endpoint: environment.imdsURL, httpClient: http) } else {
                FederatedTokenFileAssertionSource(path: federatedTokenFile!)
            }
        let report = await ChainProbe(environment: environment, httpClient: http).run(tenantID: tenant, key: keyID!, source: source, timeout: timeout)
        try await http.shutdown()
        if json {
            FileHandle.standardOutput.write(try report.jsonData() + Data("\n".utf8))
        } else {
            print(Self.render(report))
        }
        if !report.succeeded { throw ExitCode.failure }
    }

    static func render(_ report: ChainProbe.Report) -> String {
        var lines = ["Probing \(report.key) in tenant \(report.tenantID)"]
        lines += StepsText.render(report.steps.map {
            .init(name: $0.name, ok: $0.ok, milliseconds: $0.milliseconds, detail: $0.detail, code: $0.code, responsible: $0.responsible, remedy: $0.remedy)
        })
        if let tags = report.bundle?.tags, !tags.isEmpty {
            // The customer's free text: escaped, so it cannot drive the terminal.
            lines.append("  tags: " + tags.sorted { $0.key < $1.key }.map { "\(BoundedText.escaped($0.key))=\(BoundedText.escaped($0.value))" }.joined(separator: ", "))
        }
        lines.append(report.succeeded ? "Result: the chain works for this key." : "Result: FAILED.")
        return lines.joined(separator: "\n")
    }
}
