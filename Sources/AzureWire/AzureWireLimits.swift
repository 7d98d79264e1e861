/// How much of an Azure answer is read. Everything here arrives from the network, so every size
/// and every number has a ceiling: a broken or hostile endpoint gets an error, never a huge
/// allocation, a trap or a value that later overflows a conversion.
public enum AzureWireLimits {
    /// The largest body parsed. Azure's answers here are a few KiB.
    public static let maximumBody = 1 << 20
    /// The deepest JSON nesting parsed. Azure's bodies nest four levels at most
    /// (`error.innererror.innererror`); the parser would otherwise recurse as deep as the input.
    public static let maximumNesting = 32
    /// The longest access token accepted. Entra's tokens are 1–8 KiB (group claims overflow into
    /// a link past 200 groups), and the token goes into a request header on every vault call.
    public static let maximumTokenLength = 32 * 1024
    /// The longest URL-like identifier accepted (a key's `kid`, a challenge's authorization URL).
    public static let maximumIdentifierLength = 2048
    /// The longest machine code kept (`error`, `innererror.code`, a trace id).
    public static let maximumCodeLength = 128
    /// The longest service message kept, for people; longer text is cut and marked.
    public static let maximumMessageLength = 1024
    /// The most bytes a base64url field may decode to: RSA moduli and wrap results are at most
    /// 512 bytes for the 4096-bit keys Key Vault offers; this leaves room for larger ones.
    public static let maximumBinaryLength = 4096
    /// The longest lifetime believed for a token. Entra issues tokens for at most a day (managed
    /// identities' are the longest, about 24 h); a longer `expires_in` or `expires_on` is read as
    /// this, so a garbled answer can delay a refresh by a day at most, never for years.
    public static let maximumTokenLifetime: Double = 86_400
    /// Dates Key Vault may name (`nbf`, `exp`): Unix seconds from 1970 up to the end of year 9999.
    public static let dateRange: ClosedRange<Double> = 0...253_402_300_799
}
