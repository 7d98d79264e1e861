/// How a request proves who sent it.
public enum StaffAuthentication: Sendable {
    /// A Microsoft Entra access token (the HTTPS listener).
    case entra(EntraTokenVerifier)
    /// Whoever can open the Unix socket is trusted with every role: its file permissions are the
    /// guard. Documented as the single-node alternative; off by default.
    case localSocket(StaffPrincipal)
}
