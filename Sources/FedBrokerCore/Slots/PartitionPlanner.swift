/// Decides which FIC slot serves which tenant. Pure functions over a snapshot of slot loads; the
/// store runs them inside the transaction that holds the snapshot.
///
/// Why least-loaded with a deterministic tie break: every slot's managed identity has its own token
/// and throttling budget, so spreading tenants evenly spreads load, and two replicas planning from
/// the same snapshot must reach the same answer.
public enum PartitionPlanner {
    /// One slot as the planner sees it.
    public struct SlotLoad: Hashable, Sendable {
        public let id: FICSlotID
        public let state: FICSlotState
        public let tenantCount: Int

        public init(id: FICSlotID, state: FICSlotState, tenantCount: Int) {
            self.id = id
            self.state = state
            self.tenantCount = tenantCount
        }
    }

    /// Moving one tenant from one slot to another.
    public struct Move: Hashable, Sendable {
        public let tenant: TenantID
        public let from: FICSlotID
        public let to: FICSlotID

        public init(tenant: TenantID, from: FICSlotID, to: FICSlotID) {
            self.tenant = tenant
            self.from = from
            self.to = to
        }
    }

    /// The slot a new tenant goes to: the `active` slot with the fewest tenants, ties broken by the
    /// smallest slot id.
    ///
    /// - Throws: `noActiveSlot` when no slot accepts tenants.
    public static func placement(among slots: [SlotLoad]) throws(BrokerError) -> FICSlotID {
        let candidate = slots.filter { $0.state.acceptsTenants }.min { Self.lessLoaded($0.tenantCount, $0.id, $1.tenantCount, $1.id) }
        guard let candidate else {
            throw BrokerError(.noActiveSlot, "no active federated identity credential slot to place the tenant on")
        }
        return candidate.id
    }

    /// The moves that empty `draining` into the `active` slots: tenants in id order, each to the
    /// currently least-loaded active slot (water filling), so no target ends above
    /// max(its busiest starting load, the even share).
    ///
    /// - Parameters:
    ///   - draining: the slot to empty.
    ///   - tenants: the tenants assigned to `draining`.
    ///   - slots: every slot's load; `draining`'s own entry is ignored.
    /// - Throws: `noActiveSlot` when there is nowhere to move them.
    public static func drainPlan(
        draining: FICSlotID,
        tenants: [TenantID],
        slots: [SlotLoad]
    ) throws(BrokerError) -> [Move] {
        guard !tenants.isEmpty else { return [] }
        var loads = slots.filter { $0.state.acceptsTenants && $0.id != draining }.map { ($0.id, $0.tenantCount) }
        guard !loads.isEmpty else {
            throw BrokerError(.noActiveSlot, "no active slot to move the draining slot's tenants to")
        }
        var moves: [Move] = []
        moves.reserveCapacity(tenants.count)
        for tenant in Set(tenants).sorted() {
            var best = 0
            for index in loads.indices.dropFirst()
            where Self.lessLoaded(loads[index].1, loads[index].0, loads[best].1, loads[best].0) {
                best = index
            }
            loads[best].1 += 1
            moves.append(Move(tenant: tenant, from: draining, to: loads[best].0))
        }
        return moves
    }

    private static func lessLoaded(_ lCount: Int, _ lID: FICSlotID, _ rCount: Int, _ rID: FICSlotID) -> Bool {
        lCount != rCount ? lCount < rCount : lID < rID
    }
}
