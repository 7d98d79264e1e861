import AdminAPI
import BrokerServer
import BrokerStore
import CoreMetrics
import FedBrokerCore
import Foundation
import KeyVault
import Logging
import Prometheus
import ServiceLifecycle

/// The process's metrics: one Prometheus registry, bootstrapped into swift-metrics the first time
/// a broker is built and served at `GET /metrics` on the admin listener. swift-metrics allows one
/// bootstrap per process and tests build many brokers in one, so the registry is process-wide:
/// every broker of a process records into it (counters add up; a gauge shows the last broker that
/// set it). The libraries record through swift-metrics only and know nothing of Prometheus.
public enum BrokerMetrics {
    public static let registry: PrometheusCollectorRegistry = {
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        return registry
    }()

    /// Bootstraps swift-metrics with the registry, once per process (later calls do nothing).
    public static func bootstrap() { _ = registry }

    /// Everything recorded so far, in the Prometheus text format (version 0.0.4).
    public static func exposition() -> [UInt8] { registry.emitToBuffer() }
}

extension BrokerApp {
    /// Reads the store and the service and sets the gauges that are states rather than events:
    /// slots and tenants by state, the open slot job's progress, vault circuits by state, and
    /// readiness (docs/metrics.md). Runs every `metricsRefreshSeconds`; tests call it directly.
    public func refreshMetrics() async {
        await Self.refreshGauges(store: store, service: service, logger: logger)
    }

    static func refreshGauges(store: any BrokerStore, service: BrokerService, logger: Logger) async {
        do {
            let slots = try await store.slots()
            for (state, count) in OperabilityGauges.count(slots.map(\.state)) {
                CoreMetrics.Gauge(label: "fedbroker_slots", dimensions: [("state", state.rawValue)]).record(count)
            }
            let tenants = try await store.tenants()
            for (state, count) in OperabilityGauges.count(tenants.map(\.state)) {
                CoreMetrics.Gauge(label: "fedbroker_tenants", dimensions: [("state", state.rawValue)]).record(count)
            }
            // Jobs run one at a time, so an open job is the newest.
            let open = try await store.slotJobs(limit: 5).first { $0.state == .running }
            CoreMetrics.Gauge(label: "fedbroker_slot_jobs_running").record(open == nil ? 0 : 1)
            for (kind, measure, value) in OperabilityGauges.jobProgress(open) {
                CoreMetrics.Gauge(label: "fedbroker_slot_job_progress", dimensions: [("kind", kind), ("measure", measure)]).record(value)
            }
        } catch {
            logger.debug("metrics refresh could not read the store", metadata: ["fb.error": "\(type(of: error))"])
        }
        for (state, count) in service.vault.circuitCounts().byState {
            CoreMetrics.Gauge(label: "fedbroker_circuits", dimensions: [("state", state)]).record(count)
        }
        // Sets fedbroker_ready (a cached report when a probe asked a moment ago).
        _ = await service.readiness.report()
    }

    /// `/readyz` and `/metrics` for the admin listener.
    static func operability(_ service: BrokerService) -> AdminOperability {
        let readiness = service.readiness
        return AdminOperability(
            readiness: { await readiness.report() }, metrics: { BrokerMetrics.exposition() })
    }

    /// The periodic metrics refresh and, when configured, the canary.
    static func operabilityServices(
        _ configuration: BrokerAppConfiguration, store: any BrokerStore, service: BrokerService, logger: Logger
    ) -> [any Service] {
        var services: [any Service] = []
        if configuration.metricsRefreshSeconds > 0 {
            services.append(
                PeriodicService(seconds: configuration.metricsRefreshSeconds) {
                    await Self.refreshGauges(store: store, service: service, logger: logger)
                })
        }
        if let canary = service.readiness.canary {
            services.append(PeriodicService(seconds: canary.configuration.intervalSeconds) { await canary.runIfDue() })
        }
        return services
    }
}

/// Runs `work` now and then every `seconds` until graceful shutdown.
struct PeriodicService: Service {
    let seconds: Double
    let work: @Sendable () async -> Void

    init(seconds: Double, _ work: @escaping @Sendable () async -> Void) {
        self.seconds = seconds
        self.work = work
    }

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await work()
                guard (try? await Task.sleep(for: .milliseconds(Int64(seconds * 1000)))) != nil else { return }
            }
        }
    }
}

/// The gauges' label values, computed without I/O.
enum OperabilityGauges {
    /// A count for every state, zeros included, so each series exists from the first refresh.
    static func count<State: CaseIterable & Hashable>(_ states: [State]) -> [(State, Int)] {
        let counts = Dictionary(grouping: states, by: { $0 }).mapValues(\.count)
        return State.allCases.map { ($0, counts[$0] ?? 0) }
    }

    /// `(kind, measure, value)` for every job kind and measure: the open job's progress under its
    /// kind, zeros elsewhere (and everywhere when no job is open).
    static func jobProgress(_ open: SlotJob?) -> [(String, String, Int)] {
        SlotJobKind.allCases.flatMap { kind -> [(String, String, Int)] in
            let progress = open.flatMap { $0.kind == kind ? $0.progress : nil } ?? SlotJobProgress()
            return [
                (kind.rawValue, "total", progress.total), (kind.rawValue, "moved", progress.moved),
                (kind.rawValue, "failed", progress.failed), (kind.rawValue, "left", progress.left),
            ]
        }
    }
}
