import BrokerServer

extension BrokerTransportServer.Configuration {
    /// A configuration whose timeouts a loaded 2-core test run never reaches: the handshake,
    /// the preface and a request's default time are two minutes, so a test fails on what it
    /// asserts and not on the scheduler. Tests of the timeouts set their own after this.
    static func generousForTests() -> Self {
        var configuration = Self()
        configuration.handshakeTimeout = 120
        configuration.connection.prefaceTimeout = 120
        configuration.connection.maximumRequestTimeout = 120
        configuration.connection.defaultRequestTimeout = 120
        return configuration
    }
}
