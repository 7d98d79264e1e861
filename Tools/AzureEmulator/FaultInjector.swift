import Foundation
import Synchronization

/// Scripted failures: "the next 3 unwrapkey calls on vault X answer 503 after 2 s", "IMDS
/// resets the connection once". Rules are matched in the order they were added.
public struct FaultRule: Codable, Sendable, Equatable {
    public enum Service: String, Codable, Sendable, CaseIterable {
        case imds, entra, graph, keyvault
    }

    public var id: String
    public var service: Service
    /// The operation name (`token`, `getkey`, `wrapkey`, `unwrapkey`, `list`, `create`, `delete`,
    /// `openid-configuration`, `keys`), or nil for every operation of the service.
    public var operation: String?
    /// Restricts a Key Vault rule to one vault; a token-endpoint rule to one tenant.
    public var target: String?
    /// The status to answer with; nil for a latency-only rule, which then lets the request through.
    public var status: Int?
    /// How many requests the rule applies to; nil for every request until removed.
    public var remaining: Int?
    public var latencyMilliseconds: Int
    /// Adds `Retry-After: <seconds>` to the injected response.
    public var retryAfterSeconds: Int?
    /// Resets the TCP connection instead of answering.
    public var resetConnection: Bool

    public init(
        id: String = UUID().uuidString.lowercased(), service: Service, operation: String? = nil, target: String? = nil,
        status: Int? = nil, remaining: Int? = nil, latencyMilliseconds: Int = 0, retryAfterSeconds: Int? = nil,
        resetConnection: Bool = false
    ) {
        self.id = id
        self.service = service
        self.operation = operation
        self.target = target
        self.status = status
        self.remaining = remaining
        self.latencyMilliseconds = latencyMilliseconds
        self.retryAfterSeconds = retryAfterSeconds
        self.resetConnection = resetConnection
    }

    func applies(to service: Service, operation: String, target: String?) -> Bool {
        guard self.service == service, remaining.map({ $0 > 0 }) ?? true else { return false }
        if let op = self.operation, op.lowercased() != operation.lowercased() { return false }
        if let t = self.target, t.lowercased() != (target ?? "").lowercased() { return false }
        return true
    }
}

/// The fault table. Taking a fault consumes one of its `remaining` uses.
public final class FaultInjector: Sendable {
    private let rules = Mutex<[FaultRule]>([])

    public init() {}

    public func add(_ rule: FaultRule) { rules.withLock { $0.append(rule) } }
    public func remove(id: String) -> Bool {
        rules.withLock { list in
            let before = list.count
            list.removeAll { $0.id == id }
            return list.count != before
        }
    }
    public func clear() { rules.withLock { $0.removeAll() } }
    public var all: [FaultRule] { rules.withLock { $0 } }

    /// The first rule that applies, with one use consumed; exhausted rules are dropped.
    func take(service: FaultRule.Service, operation: String, target: String?) -> FaultRule? {
        rules.withLock { list in
            guard let index = list.firstIndex(where: { $0.applies(to: service, operation: operation, target: target) })
            else { return nil }
            let rule = list[index]
            if let remaining = rule.remaining {
                if remaining <= 1 { list.remove(at: index) } else { list[index].remaining = remaining - 1 }
            }
            return rule
        }
    }
}

/// Per-operation request counters, readable through the control API: tests assert "exactly one
/// token exchange" by reading them.
public final class RequestCounters: Sendable {
    private let counts = Mutex<[String: Int]>([:])
    public init() {}
    func increment(_ keys: String...) {
        counts.withLock { c in for k in keys { c[k, default: 0] += 1 } }
    }
    public var snapshot: [String: Int] { counts.withLock { $0 } }
    public func reset() { counts.withLock { $0.removeAll() } }
}
