import BrokerServer
import FedBrokerCore
import Foundation
import Testing
import FedBrokerTestSupport

@Suite struct DataKeyCacheTests {
    let clock = ManualWallClock(Date(timeIntervalSince1970: 10_000))

    func key(_ tenant: String = "t1", blob: [UInt8] = [1], context: [UInt8]? = nil) -> DataKeyCache.Key {
        .init(tenantID: tenant, keyVersion: "v1", blob: blob, context: context)
    }

    @Test func servesUntilTheAgeBoundThenForgets() {
        let cache = DataKeyCache(policy: .init(maximumAge: 300), clock: clock)
        cache.put(key(), SecretBytes([7, 7]))
        #expect(cache.get(key())?.bytes == [7, 7])
        clock.advance(by: 299)
        #expect(cache.get(key()) != nil)
        clock.advance(by: 1)
        #expect(cache.get(key()) == nil)  // the revocation bound: never served past it
        #expect(cache.count == 0)
    }

    @Test func boundedByUsesAndEntries() {
        let cache = DataKeyCache(policy: .init(maximumEntries: 2, maximumUses: 2), clock: clock)
        cache.put(key(blob: [1]), SecretBytes([1]))
        #expect(cache.get(key(blob: [1])) != nil)
        #expect(cache.get(key(blob: [1])) != nil)
        #expect(cache.get(key(blob: [1])) == nil)  // used up
        cache.put(key(blob: [2]), SecretBytes([2]))
        cache.put(key(blob: [3]), SecretBytes([3]))
        cache.put(key(blob: [4]), SecretBytes([4]))  // evicts the oldest
        #expect(cache.count == 2)
        #expect(cache.get(key(blob: [2])) == nil)
        #expect(cache.get(key(blob: [4]))?.bytes == [4])
    }

    @Test func contextAndTenantAreSeparateEntriesAndPurgeIsPerTenant() {
        let cache = DataKeyCache(clock: clock)
        cache.put(key(context: Array("a".utf8)), SecretBytes([1]))
        #expect(cache.get(key(context: Array("b".utf8))) == nil)
        #expect(cache.get(key(context: nil)) == nil)
        #expect(cache.get(key(context: [])) == nil)  // "no context" differs from an empty one
        cache.put(key("t2", context: Array("a".utf8)), SecretBytes([2]))
        #expect(cache.purge(tenantID: "t1") == 1)
        #expect(cache.get(key(context: Array("a".utf8))) == nil)
        #expect(cache.get(key("t2", context: Array("a".utf8)))?.bytes == [2])
    }

    @Test func aKeyUnwrappedAcrossAPurgeIsNotStored() {
        let cache = DataKeyCache(clock: clock)
        let before = cache.purgeEpoch  // a vault call starts
        cache.purge(tenantID: "t1")  // the tenant is revoked while it is under way
        cache.put(key(), SecretBytes([9]), ifNotPurgedSince: before)
        #expect(cache.get(key()) == nil)
        let after = cache.purgeEpoch  // a call that starts after the purge may store
        cache.put(key(), SecretBytes([9]), ifNotPurgedSince: after)
        #expect(cache.get(key())?.bytes == [9])
    }

    @Test func secretsNeverPrintTheirBytes() {
        let secret = SecretBytes([0xde, 0xad, 0xbe, 0xef])
        #expect("\(secret)" == "SecretBytes(<4 bytes>)")
        #expect(String(reflecting: secret) == "SecretBytes(<4 bytes>)")
        #expect(!String(describing: secret).contains("de"))
        #expect(SecretBytes([1, 2]) == SecretBytes([1, 2]))
        #expect(SecretBytes([1, 2]) != SecretBytes([1, 3]))
    }
}
