import NIOSSL
import PostgresNIO

extension PostgresSettings {
    /// The TLS client configuration `sslMode` asks for; nil for `disable`.
    ///
    /// `prefer` and `require` without a CA keep libpq's meaning (encrypt, verify nothing), which
    /// is why they are not the default off loopback and why `securityWarning` names them.
    var tlsConfiguration: TLSConfiguration? {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = self.sslRootCertificatePath.map { .file($0) } ?? .default
        switch self.sslMode {
        case .disable:
            return nil
        case .prefer:
            tls.certificateVerification = .none
        case .require:
            tls.certificateVerification = self.sslRootCertificatePath == nil ? .none : .noHostnameVerification
        case .verifyCA:
            tls.certificateVerification = .noHostnameVerification
        case .verifyFull:
            tls.certificateVerification = .fullVerification
        }
        return tls
    }

    /// For the pool. `prefer` may fall back to plaintext; every other mode fails without TLS.
    var clientTLS: PostgresClient.Configuration.TLS {
        guard let tls = self.tlsConfiguration else { return .disable }
        return self.sslMode == .prefer ? .prefer(tls) : .require(tls)
    }

    /// For the single connections (the probe at open, test administration).
    func connectionTLS() throws -> PostgresConnection.Configuration.TLS {
        guard let tls = self.tlsConfiguration else { return .disable }
        let context = try NIOSSLContext(configuration: tls)
        return self.sslMode == .prefer ? .prefer(context) : .require(context)
    }
}
