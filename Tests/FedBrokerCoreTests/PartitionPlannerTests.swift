import Foundation
import Testing

@testable import FedBrokerCore

/// A seeded generator, so a failing random population can be reproduced from its seed.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        self.state &+= 0x9E37_79B9_7F4A_7C15
        var z = self.state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

private func slot(_ n: Int) -> FICSlotID { FICSlotID(rawValue: String(format: "fic-%02d", n))! }
private func tenant(_ n: Int) -> TenantID { TenantID(rawValue: "t-\(n)")! }

@Suite struct PartitionPlannerTests {
    @Test("Placement picks the least-loaded active slot, ties to the smallest id, skipping non-active slots")
    func placement() throws {
        let loads: [PartitionPlanner.SlotLoad] = [
            .init(id: slot(3), state: .active, tenantCount: 2),
            .init(id: slot(1), state: .draining, tenantCount: 0),
            .init(id: slot(2), state: .active, tenantCount: 2),
            .init(id: slot(4), state: .provisioning, tenantCount: 0),
            .init(id: slot(5), state: .active, tenantCount: 5),
        ]
        #expect(try PartitionPlanner.placement(among: loads) == slot(2))
        #expect(try PartitionPlanner.placement(among: loads.shuffled()) == slot(2), "input order must not matter")
    }

    @Test("No active slot: noActiveSlot")
    func placementWithoutActiveSlot() {
        let loads: [PartitionPlanner.SlotLoad] = [.init(id: slot(1), state: .draining, tenantCount: 0)]
        #expect(throws: BrokerError(.noActiveSlot, "")) { try PartitionPlanner.placement(among: loads) }
        #expect(throws: BrokerError(.noActiveSlot, "")) {
            try PartitionPlanner.drainPlan(draining: slot(1), tenants: [tenant(1)], slots: loads)
        }
    }

    @Test("Draining an empty slot plans nothing")
    func emptyDrain() throws {
        #expect(try PartitionPlanner.drainPlan(draining: slot(1), tenants: [], slots: []).isEmpty)
    }

    @Test("Property: placing a random population one by one keeps every active slot within one tenant",
          arguments: 0..<25)
    func placementBalance(seed: UInt64) throws {
        var rng = SplitMix64(state: seed)
        let slotCount = Int.random(in: 1...20, using: &rng)
        var loads = (0..<slotCount).map { PartitionPlanner.SlotLoad(id: slot($0), state: .active, tenantCount: 0) }
        for _ in 0..<Int.random(in: 0...500, using: &rng) {
            let chosen = try PartitionPlanner.placement(among: loads)
            let index = loads.firstIndex { $0.id == chosen }!
            loads[index] = .init(id: chosen, state: .active, tenantCount: loads[index].tenantCount + 1)
            let counts = loads.map(\.tenantCount)
            #expect(counts.max()! - counts.min()! <= 1)
        }
    }

    @Test("Property: a drain plan moves every tenant of the draining slot exactly once, to active slots, and leaves no target above max(its busiest start, the even share)",
          arguments: 0..<40)
    func drainProperties(seed: UInt64) throws {
        var rng = SplitMix64(state: seed)
        let slotCount = Int.random(in: 2...20, using: &rng)
        let states: [FICSlotState] = [.active, .active, .active, .provisioning, .draining]
        var loads: [PartitionPlanner.SlotLoad] = (0..<slotCount).map { n in
            .init(id: slot(n), state: n == 0 ? .draining : states.randomElement(using: &rng)!,
                  tenantCount: Int.random(in: 0...40, using: &rng))
        }
        if !loads.contains(where: { $0.state == .active }) {
            loads[1] = .init(id: loads[1].id, state: .active, tenantCount: loads[1].tenantCount)
        }
        let draining = slot(0)
        let tenants = (0..<loads[0].tenantCount).map { tenant(Int(seed) * 1000 + $0) }

        let moves = try PartitionPlanner.drainPlan(draining: draining, tenants: tenants.shuffled(using: &rng), slots: loads.shuffled(using: &rng))

        #expect(moves.count == tenants.count, "no tenant lost")
        #expect(Set(moves.map(\.tenant)) == Set(tenants), "no tenant duplicated or invented")
        #expect(moves.allSatisfy { $0.from == draining })
        let active = Dictionary(uniqueKeysWithValues: loads.filter { $0.state == .active }.map { ($0.id, $0.tenantCount) })
        #expect(moves.allSatisfy { active[$0.to] != nil }, "targets are active slots only")

        var after = active
        for move in moves { after[move.to, default: 0] += 1 }
        let total = active.values.reduce(0, +) + tenants.count
        let evenShare = (total + active.count - 1) / active.count
        let ceiling = max(active.values.max()!, evenShare)
        #expect(after.values.max()! <= ceiling, "no target overloaded")
        #expect(after.values.reduce(0, +) == total)

        // Same snapshot, same plan: replicas agree.
        #expect(try PartitionPlanner.drainPlan(draining: draining, tenants: tenants, slots: loads) == moves)
    }

    @Test("Property: draining a balanced population leaves the remaining active slots within one", arguments: 0..<25)
    func drainOfBalancedPopulation(seed: UInt64) throws {
        var rng = SplitMix64(state: seed &+ 1000)
        let slotCount = Int.random(in: 2...20, using: &rng)
        let population = Int.random(in: 0...400, using: &rng)
        var counts = Array(repeating: population / slotCount, count: slotCount)
        for index in 0..<(population % slotCount) { counts[index] += 1 }
        let loads = (0..<slotCount).map { n in
            PartitionPlanner.SlotLoad(id: slot(n), state: n == 0 ? .draining : .active, tenantCount: counts[n])
        }
        let moves = try PartitionPlanner.drainPlan(
            draining: slot(0), tenants: (0..<counts[0]).map(tenant), slots: loads)
        var after = Dictionary(uniqueKeysWithValues: loads.dropFirst().map { ($0.id, $0.tenantCount) })
        for move in moves { after[move.to, default: 0] += 1 }
        #expect(after.values.max()! - after.values.min()! <= 1)
        #expect(after.values.reduce(0, +) == population)
    }
}
