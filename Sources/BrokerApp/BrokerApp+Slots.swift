import AsyncHTTPClient
import AzureHTTP
import AzureIdentity
import BrokerServer
import BrokerStore
import FedBrokerCore
import Foundation
import GraphClient
import KeyVault
import Logging
import ServiceLifecycle
import SlotOperations

extension BrokerApp {
    /// Every managed identity's assertion source: a federated token file where one is configured
    /// (or where AKS workload identity's `AZURE_FEDERATED_TOKEN_FILE` names one for
    /// `AZURE_CLIENT_ID`), exchanged in the ISV tenant for the identity's token; IMDS otherwise.
    /// A token file needs the ISV tenant (`azure.isvTenantID`): without it the build fails.
    static func assertionSources(
        _ configuration: BrokerAppConfiguration, httpClient: HTTPClient, clock: any WallClock,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> AssertionSourceCatalog {
        var sources = AssertionSourceCatalog.Configuration(
            imdsURL: configuration.service.environment.imdsURL, tokenFiles: configuration.slots.tokenFiles,
            attemptTimeout: configuration.service.azureAttemptTimeout,
            authorityURL: configuration.service.environment.authorityURL, isvTenantID: configuration.slots.isvTenantID)
        sources.addWorkloadIdentity(from: environment)
        if !sources.tokenFiles.isEmpty, (sources.isvTenantID ?? "").isEmpty {
            throw BrokerError(
                .invalidArgument,
                "a federated token file (slots.tokenFiles or AZURE_FEDERATED_TOKEN_FILE) needs azure.isvTenantID: "
                    + "the token is exchanged in the ISV tenant for the managed identity's token")
        }
        return AssertionSourceCatalog(configuration: sources, httpClient: httpClient, clock: clock)
    }

    /// The slot-job runner, when this replica runs jobs and knows the ISV's tenant and application.
    static func slotJobRunner(
        _ configuration: BrokerAppConfiguration, store: any BrokerStore, service: BrokerService, httpClient: HTTPClient,
        clock: any WallClock, logger: Logger
    ) -> SlotJobRunner? {
        let slots = configuration.slots
        guard slots.runJobs, let isv = slots.isvTenantID, let appID = configuration.service.environment.applicationClientID else {
            if configuration.slots.runJobs {
                logger.info("slot jobs do not run on this replica: azure.isvTenantID is not configured")
            }
            return nil
        }
        var runnerConfiguration = SlotJobRunner.Configuration(owner: configuration.replicaID, isvTenantID: isv, applicationID: appID)
        runnerConfiguration.leaseSeconds = slots.leaseSeconds
        runnerConfiguration.pollInterval = slots.pollSeconds
        runnerConfiguration.movesPerSecond = slots.movesPerSecond
        runnerConfiguration.propagationSeconds = slots.propagationSeconds
        runnerConfiguration.maximumTokenLifetime = slots.maximumTokenLifetimeSeconds
        runnerConfiguration.callTimeout = max(configuration.service.azureAttemptTimeout * 3, 10)
        runnerConfiguration.vaultResource = configuration.service.environment.vaultResources.first ?? runnerConfiguration.vaultResource
        let graph = GraphFederatedCredentials(
            client: GraphClient(graphURL: configuration.service.environment.graphURL, httpClient: httpClient, clock: clock, logger: logger),
            application: slots.applicationObjectID.map(GraphApplication.objectID) ?? .appID(appID),
            token: GraphFederatedCredentials.tokenThroughServingSlot(
                store: store, tokens: service.tokens, sources: service.assertionSources, isvTenantID: isv))
        return SlotJobRunner(
            configuration: runnerConfiguration, store: store, graph: graph, tokens: service.tokens, sources: service.assertionSources,
            clock: clock, logger: logger)
    }
}

/// Runs slot jobs until graceful shutdown. A job interrupted here keeps its lease until it
/// expires; then any replica (this one restarted, or another) resumes it from its last step.
struct SlotJobService: Service {
    let runner: SlotJobRunner
    func run() async throws {
        await cancelWhenGracefulShutdown { await runner.run() }
    }
}

/// Announces the replica to the store and keeps its share of every vault's budget at the
/// budget divided by the live replicas; forgets the replica at graceful shutdown so the others'
/// shares grow at once.
struct ReplicaHeartbeatService: Service {
    let store: any BrokerStore
    let vault: KeyVaultClient
    let replicaID: String
    let interval: Double
    let clock: any WallClock
    let logger: Logger

    func run() async throws {
        let started = clock.now
        await cancelWhenGracefulShutdown {
            var lastCount = 0
            while !Task.isCancelled {
                do {
                    let live = try await store.heartbeat(replica: replicaID, startedAt: started, liveWithin: interval * 3)
                    if live != lastCount {
                        vault.shareBudget(among: live)
                        logger.info(
                            "replicas sharing the store changed; vault budget re-divided",
                            metadata: ["fb.replicas": "\(live)", "fb.vaultBudgetShare": "\(vault.budgetShare)"])
                        lastCount = live
                    }
                } catch {
                    // The store is down: keep the last share (a conservative guess) and retry.
                    logger.warning("replica heartbeat failed; keeping the current vault budget share", metadata: ["fb.error": "\(error)"])
                }
                try? await clock.sleep(seconds: interval)
            }
        }
        try? await store.removeReplica(replicaID)
    }
}
