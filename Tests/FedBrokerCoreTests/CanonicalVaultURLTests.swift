import Testing

@testable import FedBrokerCore

/// The vault URL's fast path must answer exactly as the full parse does, or a blob could pass one
/// and not the other.
@Suite struct CanonicalVaultURLTests {
    @Test("What the fast path accepts, the full parse returns unchanged; the rest goes the long way", arguments: [
        "https://contoso.vault.azure.net", "https://a-b.vault.azure.net", "https://localhost", "https://x1.y2",
        "https://Contoso.vault.azure.net", "https://contoso.vault.azure.net/", "https://contoso.vault.azure.net.",
        "https://.contoso.net", "https://a..b", "https://contoso.vault.azure.net:443", "https://host:8443", "https://host:0",
        "https://host:65535", "https://host:65536", "https://host:1:2", "https://:80", "https://host:007",
        "http://contoso.vault.azure.net", "https://contoso.vault.azure.net/keys", "https://", "https://x_y.net",
        " https://contoso.vault.azure.net",
    ])
    func fastPathAgrees(_ url: String) {
        if KeyReference.isCanonicalVaultURL(url) {
            #expect(KeyReference.canonicalVaultURL(url) == url)
        }
    }

    @Test("Random strings over the URL's alphabet: whenever the fast path accepts, the canonical form is the input")
    func randomAgreement() {
        var generator = SystemRandomNumberGenerator()
        let alphabet = Array("abz0094-._:/AZ ")
        var accepted = 0
        for _ in 0..<20_000 {
            let length = Int.random(in: 1...24, using: &generator)
            let host = String((0..<length).map { _ in alphabet.randomElement(using: &generator)! })
            let url = "https://" + host
            guard KeyReference.isCanonicalVaultURL(url) else { continue }
            accepted += 1
            #expect(KeyReference.canonicalVaultURL(url) == url, "\(url)")
        }
        #expect(accepted > 100)
    }

    @Test("The usual forms are recognised without the parse")
    func recognised() {
        #expect(KeyReference.isCanonicalVaultURL("https://contoso.vault.azure.net"))
        #expect(!KeyReference.isCanonicalVaultURL("https://Contoso.vault.azure.net"))
        #expect(!KeyReference.isCanonicalVaultURL("https://a..b"))
        #expect(KeyReference.isCanonicalVaultURL("https://host:8443"))
        #expect(!KeyReference.isCanonicalVaultURL("https://host:443"))
        #expect(!KeyReference.isCanonicalVaultURL("https://host:08443"))
        #expect(!KeyReference.isCanonicalVaultURL("https://host:"))
        #expect(!KeyReference.isCanonicalVaultURL("https://host:70000"))
        #expect(!KeyReference.isCanonicalVaultURL("https://host.:8443"))
        #expect(KeyReference.canonicalVaultURL("https://host:8443") == "https://host:8443")
        #expect(KeyReference.canonicalVaultURL("HTTPS://Contoso.Vault.Azure.Net:443/") == "https://contoso.vault.azure.net")
    }
}
