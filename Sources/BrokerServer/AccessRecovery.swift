import BrokerStore
import FedBrokerCore
import Foundation
import Logging

/// Brings `access_lost` tenants back on their own: probes each one again on its backoff schedule
/// (`AccessReprobeSchedule`), and when a probe proves access works, serves the tenant again,
/// audited with actor `fedbroker`. Suspended tenants are never probed: only an operator lifts a
/// suspension.
///
/// Every replica runs this. The store hands each due probe to one replica (`claimAccessProbe`
/// records the next due time before the probe runs), so N replicas do not probe a customer's
/// vault N times, and the schedule survives restarts.
public final class AccessRecovery: Sendable {
    public struct Configuration: Sendable, Equatable {
        /// First probe `minimumSeconds` after the loss, then doubling up to every `maximumSeconds`.
        public var schedule = AccessReprobeSchedule.standard
        /// The longest one probe (a token exchange and two vault calls) may take.
        public var probeTimeoutSeconds: Double = 30
        /// Probes one replica runs at once, so a mass loss (a region's Entra down) stays bounded.
        public var concurrency = 4

        public init() {}
    }

    public let configuration: Configuration
    let service: BrokerService
    let logger: Logger

    public init(service: BrokerService, configuration: Configuration, logger: Logger) {
        self.service = service
        self.configuration = configuration
        self.logger = logger
    }

    /// Passes until cancelled. Between passes it waits on the service's clock until the next probe
    /// is due, but never longer than the schedule's minimum, so a tenant that has just lost access
    /// is seen before its first probe is due.
    public func run() async {
        let clock = service.clock
        let floor = min(1, configuration.schedule.minimumSeconds / 4)
        while !Task.isCancelled {
            var next: Date?
            do {
                next = try await runPass()
            } catch {
                logger.warning("access recovery could not read the store; retrying", metadata: ["fb.error": "\(type(of: error))"])
            }
            let untilNext = next.map { $0.timeIntervalSince(clock.now) } ?? .infinity
            let wait = max(min(untilNext, configuration.schedule.minimumSeconds), floor)
            do {
                try await clock.sleep(seconds: wait)
            } catch {
                return
            }
        }
    }

    /// One pass: claims the due probes of every `access_lost` tenant, runs them, and returns the
    /// earliest time a probe is due next (nil when no tenant is waiting).
    @discardableResult
    public func runPass() async throws -> Date? {
        var due: [(tenant: Tenant, attempt: Int)] = []
        var next: Date?
        var after: TenantID?
        let pageSize = 500
        while true {
            let page = try await service.store.tenants(matching: TenantQuery(state: .accessLost, after: after, limit: pageSize))
            for tenant in page {
                do {
                    switch try await service.store.claimAccessProbe(tenant.id, schedule: configuration.schedule) {
                    case .probeNow(let attempt, let nextProbeAt):
                        due.append((tenant, attempt))
                        next = min(next ?? nextProbeAt, nextProbeAt)
                    case .notDue(let until):
                        next = min(next ?? until, until)
                    case .notLost:
                        break
                    }
                } catch {
                    logger.warning(
                        "access recovery could not claim a probe", metadata: ["fb.tenant": "\(tenant.id)", "fb.error": "\(type(of: error))"])
                }
            }
            guard page.count == pageSize, let last = page.last?.id else { break }
            after = last
        }
        await withTaskGroup(of: Void.self) { group in
            var running = 0
            for (tenant, attempt) in due {
                if running == max(configuration.concurrency, 1) {
                    await group.next()
                    running -= 1
                }
                group.addTask { await self.probe(tenant, attempt: attempt) }
                running += 1
            }
        }
        return next
    }

    private func probe(_ tenant: Tenant, attempt: Int) async {
        let outcome = await service.probeAccess(tenant, timeout: configuration.probeTimeoutSeconds)
        switch outcome {
        case .works:
            do {
                _ = try await service.restoreAccess(tenant)
                logger.notice(
                    "tenant access works again; serving it", metadata: ["fb.tenant": "\(tenant.id)", "fb.attempt": "\(attempt)"])
            } catch let error as BrokerError where error.code == .versionConflict || error.code == .illegalTenantTransition {
                // An operator or another replica changed the tenant meanwhile; the next pass looks again.
                logger.debug("tenant changed during its access probe", metadata: ["fb.tenant": "\(tenant.id)"])
            } catch {
                logger.warning(
                    "tenant access works again but could not be recorded; retrying at the next probe",
                    metadata: ["fb.tenant": "\(tenant.id)", "fb.error": "\(type(of: error))"])
            }
        case .refused(let code):
            logger.info(
                "tenant still refuses the broker", metadata: ["fb.tenant": "\(tenant.id)", "fb.code": "\(code)", "fb.attempt": "\(attempt)"])
        case .inconclusive(let code):
            logger.info(
                "tenant access probe was inconclusive", metadata: ["fb.tenant": "\(tenant.id)", "fb.code": "\(code)", "fb.attempt": "\(attempt)"])
        }
    }
}
