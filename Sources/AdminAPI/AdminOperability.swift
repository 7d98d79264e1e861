import FedBrokerCore
import Foundation

/// What the admin listener serves for probes and scrapes besides the admin API, handed in by the
/// assembly (BrokerApp), so this module knows neither the metrics backend nor how readiness is
/// decided. Neither needs a token: Kubernetes probes and Prometheus scrape them, which is why the
/// admin listener must not be reachable from outside the cluster.
public struct AdminOperability: Sendable {
    /// Answers `GET /readyz` (the generated operation `readyz`): 200 when ready, else 503.
    public var readiness: @Sendable () async -> HealthReport
    /// Answers `GET /metrics` in the Prometheus text format; nil: no `/metrics` route.
    public var metrics: (@Sendable () -> [UInt8])?

    public init(readiness: @escaping @Sendable () async -> HealthReport, metrics: (@Sendable () -> [UInt8])? = nil) {
        self.readiness = readiness
        self.metrics = metrics
    }
}

/// The `/readyz` body: the OpenAPI `Health` schema (`status` ok / unavailable, `detail`) plus
/// `checked_at` and the `checks` list.
extension HealthReport {
    /// `{"status":"ok"|"unavailable","detail":…,"checked_at":…,"checks":[{"name","ok","required","detail"}]}`.
    public func json() -> [UInt8] {
        let failing = checks.filter { !$0.ok && $0.required }.map(\.name)
        let detail = failing.isEmpty ? "ready" : "not ready: \(failing.joined(separator: ", ")) failing"
        let formatter = ISO8601DateFormatter()
        let body: [String: Any] = [
            "status": ready ? "ok" : "unavailable", "detail": detail, "checked_at": formatter.string(from: checkedAt),
            "checks": checks.map { ["name": $0.name, "ok": $0.ok, "required": $0.required, "detail": $0.detail] as [String: Any] },
        ]
        let data = (try? JSONSerialization.data(withJSONObject: body, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
        return Array(data)
    }
}
