/// A secret the emulated cloud handed out or took in, reported to `AzureEmulator.Configuration.secretObserver`.
///
/// Why it exists: the test suite proves that no token or key material reaches a broker log
/// line. It can only look for secrets it knows, and the broker's tokens and envelope keys
/// never pass through the tests' own hands, only through the emulator.
public enum IssuedSecret: Sendable, Hashable {
    /// A JWT the emulator signed: an IMDS managed-identity token (the broker's client assertion),
    /// an access token from the token endpoint, a staff user's token.
    case token(String)
    /// A value Key Vault's wrapkey or unwrapkey took in or handed out: a plaintext envelope key
    /// and its RSA-wrapped form.
    case keyMaterial([UInt8])
}
