/// The host names that mean "this machine only": where plaintext listeners are allowed.
public enum LoopbackHost {
    public static func contains(_ host: String) -> Bool {
        ["127.0.0.1", "::1", "localhost"].contains(host)
    }
}
