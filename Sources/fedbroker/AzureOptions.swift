import ArgumentParser
import AzureHTTP
import AzureIdentity

/// The Azure configuration every subcommand that talks to Azure shares: flags win over the
/// `FEDBROKER_*` environment variables, which win over Azure's defaults.
struct AzureOptions: ParsableArguments {
    @Option(name: .long, help: "IMDS base URL (env FEDBROKER_IMDS_URL; default http://169.254.169.254).")
    var imdsURL: String?

    @Option(name: .long, help: "Entra authority base URL (env FEDBROKER_AUTHORITY_URL; default https://login.microsoftonline.com).")
    var authorityURL: String?

    @Option(name: .long, help: "The ISV's multi-tenant application (client) id (env FEDBROKER_APP_CLIENT_ID).")
    var appClientID: String?

    @Option(name: .long, help: "PEM file of CA certificates to trust besides the system's (env FEDBROKER_CA_BUNDLE).")
    var caBundle: String?

    func resolve() -> AzureEnvironment {
        var environment = AzureEnvironment.fromEnvironment()
        if let imdsURL { environment.imdsURL = imdsURL }
        if let authorityURL { environment.authorityURL = authorityURL }
        if let appClientID { environment.applicationClientID = appClientID }
        if let caBundle { environment.caBundlePath = caBundle }
        return environment
    }
}
