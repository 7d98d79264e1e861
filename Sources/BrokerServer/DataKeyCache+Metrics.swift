import CoreMetrics

extension DataKeyCache {
    /// The cache's metrics (docs/metrics.md), made with the cache, so after the process
    /// bootstrapped its metrics backend. No labels: nothing about a tenant or a key is recorded.
    struct Metrics: Sendable {
        private let hits = Counter(label: "fedbroker_cache_hits_total")
        private let misses = Counter(label: "fedbroker_cache_misses_total")
        /// Entries dropped for age, uses or room (not purges).
        private let evictions = Counter(label: "fedbroker_cache_evictions_total")
        /// Keys dropped by purges (a tenant revoked, suspended or disabled; everything).
        private let purges = Counter(label: "fedbroker_cache_purges_total")
        private let entries = Gauge(label: "fedbroker_cache_entries")

        func lookup(found: Bool) { (found ? hits : misses).increment() }

        /// Entries were evicted (age, uses, room), leaving `count`.
        func evicted(_ evicted: Int, leaving count: Int) {
            if evicted > 0 { evictions.increment(by: evicted) }
            entries.record(count)
        }

        /// `purged` keys were dropped, leaving `count`.
        func purged(_ purged: Int, leaving count: Int) {
            purges.increment(by: purged)
            entries.record(count)
        }
    }
}
