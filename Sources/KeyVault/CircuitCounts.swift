import FedBrokerCore
import Foundation

/// How many vaults' circuit breakers are in each state: what the `fedbroker_circuits{state}`
/// gauge shows. Counts only: vaults are per customer, so a label per vault would be unbounded.
public struct CircuitCounts: Sendable, Equatable {
    /// Calls go through.
    public var closed = 0
    /// Calls are refused at once until the open period ends.
    public var open = 0
    /// The open period is over: the next call (or the one under way) probes the vault.
    public var halfOpen = 0

    public init(closed: Int = 0, open: Int = 0, halfOpen: Int = 0) {
        self.closed = closed
        self.open = open
        self.halfOpen = halfOpen
    }

    /// Counts `states` as they stand at `now`: an open circuit whose period has ended counts as
    /// half-open (it lets the next call through as a probe), even before anyone called.
    public init(states: [CircuitBreaker.State], now: Date) {
        for state in states {
            switch state {
            case .closed: closed += 1
            case .open(let until) where now < until: open += 1
            case .open, .halfOpen: halfOpen += 1
            }
        }
    }

    /// The gauge's label values with their counts, in a fixed order.
    public var byState: [(state: String, count: Int)] {
        [("closed", closed), ("open", open), ("half_open", halfOpen)]
    }
}
