import BrokerServer
import ServiceLifecycle

/// Re-probes `access_lost` tenants on their backoff schedule until graceful shutdown; a probe
/// under way when shutdown starts is cancelled, and its due time is already stored for the next run.
struct AccessRecoveryService: Service {
    let recovery: AccessRecovery
    func run() async throws {
        await cancelWhenGracefulShutdown { await recovery.run() }
    }
}
