import Synchronization

/// Per-caller caps across all of a caller's connections: how many connections it may hold and
/// how many requests it may have in flight (`server.maxConnectionsPerCaller`,
/// `server.maxRequestsPerCaller`), so one caller (a leaking pool, a retry storm) cannot take the
/// whole server from the others. A caller is its authenticated identity; in plaintext mode every
/// connection is the one anonymous caller.
///
/// A request counts from its dispatch until the server's work on it has ended, which for a
/// cancelled or expired request can be after its stream was freed on the connection.
public final class CallerAdmission: Sendable {
    public struct Limits: Sendable, Equatable {
        public var maximumConnections: Int
        public var maximumRequests: Int
        public init(maximumConnections: Int = 1024, maximumRequests: Int = 2048) {
            self.maximumConnections = maximumConnections
            self.maximumRequests = maximumRequests
        }
    }

    private struct Usage { var connections = 0, requests = 0 }

    public let limits: Limits
    private let usage = Mutex<[CallerIdentity: Usage]>([:])

    public init(limits: Limits) { self.limits = limits }

    /// Counts a new connection of `caller`; false (and nothing counted) when it is at its cap.
    public func openConnection(_ caller: CallerIdentity) -> Bool {
        usage.withLock { usage in
            guard usage[caller, default: Usage()].connections < limits.maximumConnections else { return false }
            usage[caller, default: Usage()].connections += 1
            return true
        }
    }

    public func closeConnection(_ caller: CallerIdentity) {
        usage.withLock { Self.release(&$0, caller) { $0.connections -= 1 } }
    }

    /// Counts a new request of `caller`; false (and nothing counted) when it is at its cap.
    public func startRequest(_ caller: CallerIdentity) -> Bool {
        usage.withLock { usage in
            guard usage[caller, default: Usage()].requests < limits.maximumRequests else { return false }
            usage[caller, default: Usage()].requests += 1
            return true
        }
    }

    public func finishRequest(_ caller: CallerIdentity) {
        usage.withLock { Self.release(&$0, caller) { $0.requests -= 1 } }
    }

    /// `caller`'s connections and requests in flight now.
    public func usage(of caller: CallerIdentity) -> (connections: Int, requests: Int) {
        usage.withLock { ($0[caller]?.connections ?? 0, $0[caller]?.requests ?? 0) }
    }

    /// Forgets a caller with nothing left, so the table holds only callers that are connected.
    private static func release(_ usage: inout [CallerIdentity: Usage], _ caller: CallerIdentity, _ change: (inout Usage) -> Void) {
        guard var entry = usage[caller] else { return }
        change(&entry)
        entry.connections = max(0, entry.connections)
        entry.requests = max(0, entry.requests)
        usage[caller] = entry.connections == 0 && entry.requests == 0 ? nil : entry
    }
}
