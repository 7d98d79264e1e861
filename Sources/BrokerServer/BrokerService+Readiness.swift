import AsyncHTTPClient
import AzureIdentity
import BrokerStore
import FedBrokerCore
import Foundation
import KeyVault
import Logging

extension BrokerService {
    /// Readiness over this service's own store, audit writer and assertion cache, and the canary
    /// when one is configured.
    static func makeReadiness(
        configuration: Configuration, store: any BrokerStore, audit: any AuditTrail, tokens: CrossTenantTokenProvider,
        sources: AssertionSourceCatalog, httpClient: HTTPClient, clock: any WallClock, logger: Logger
    ) -> Readiness {
        let probes = Readiness.Probes(
            storeRead: { _ = try await store.latestChangeSequence() },
            slots: { try await store.slots() },
            audit: { await audit.health },
            assertion: { slot, deadline in
                try await tokens.assertion(from: sources.source(forClientID: slot.identity.managedIdentityClientID), deadline: deadline)
            })
        let canary = configuration.readiness.canary.map {
            Canary(
                configuration: $0, store: store, sources: sources,
                probe: ChainProbe(environment: configuration.environment, httpClient: httpClient, clock: clock), clock: clock,
                logger: logger)
        }
        return Readiness(configuration: configuration.readiness, probes: probes, canary: canary, clock: clock, logger: logger)
    }
}
