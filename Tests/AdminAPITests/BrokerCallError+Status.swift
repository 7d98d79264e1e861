import BrokerClient
import BrokerWire

extension BrokerCallError {
    /// The broker's answer, when the failure is one (nil for a deadline or a lost connection),
    /// so a test checks the code and reason it expects, not merely that something failed.
    var wireStatus: WireStatus? {
        if case .status(let status) = self { status } else { nil }
    }
}
