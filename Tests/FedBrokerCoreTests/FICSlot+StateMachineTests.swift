import Testing

@testable import FedBrokerCore

private func expectedTarget(_ state: FICSlotState, _ event: FICSlotEvent) -> FICSlotState? {
    switch (state, event) {
    case (.provisioning, .activate), (.draining, .undrain): .active
    case (.active, .drain): .draining
    case (.draining, .retire), (.provisioning, .abandon): .retired
    default: nil
    }
}

@Suite struct FICSlotStateMachineTests {
    @Test("Exhaustive: every state × event follows the table or throws illegalSlotTransition",
          arguments: FICSlotState.allCases)
    func exhaustiveTable(state: FICSlotState) {
        for event in FICSlotEvent.allCases {
            if let target = expectedTarget(state, event) {
                #expect((try? state.applying(event, assignedTenants: 0)) == target, "\(state) + \(event)")
            } else {
                #expect(throws: BrokerError(.illegalSlotTransition, "")) { _ = try state.applying(event, assignedTenants: 0) }
            }
        }
    }

    @Test("A slot that still serves tenants cannot be retired or abandoned")
    func retireNeedsEmptySlot() {
        #expect(throws: BrokerError(.slotNotEmpty, "")) { _ = try FICSlotState.draining.applying(.retire, assignedTenants: 1) }
        #expect(throws: BrokerError(.slotNotEmpty, "")) { _ = try FICSlotState.provisioning.applying(.abandon, assignedTenants: 3) }
    }

    @Test("Serving, accepting and counting follow the states")
    func stateProperties() {
        #expect(FICSlotState.allCases.filter(\.isServing) == [.active, .draining])
        #expect(FICSlotState.allCases.filter(\.acceptsTenants) == [.active])
        #expect(FICSlotState.allCases.filter(\.countsTowardsLimit) == [.provisioning, .active, .draining])
    }

    @Test("At most 20 non-retired slots per application")
    func slotLimit() throws {
        for count in 0..<20 { try FICSlot.checkCanCreate(nonRetiredCount: count) }
        #expect(throws: BrokerError(.slotLimitReached, "")) { try FICSlot.checkCanCreate(nonRetiredCount: 20) }
        #expect(throws: BrokerError(.slotLimitReached, "")) { try FICSlot.checkCanCreate(nonRetiredCount: 21) }
    }

    @Test("Slot ids follow Graph's FIC name rules")
    func slotIDValidation() {
        #expect(FICSlotID(rawValue: "fic-01") != nil)
        #expect(FICSlotID(rawValue: "ab") == nil)
        #expect(FICSlotID(rawValue: "has space") == nil)
        #expect(FICSlotID(rawValue: String(repeating: "a", count: 121)) == nil)
    }
}
