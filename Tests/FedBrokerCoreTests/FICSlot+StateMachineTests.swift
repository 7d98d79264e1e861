import Testing

@testable import FedBrokerCore

/// The slot lifecycle as its documentation states it, written out here by hand rather than
/// derived from `FICSlotState.applying`, so the test can disagree with the implementation.
///
/// docs/slots.md, "States":
///
///     provisioning --activate--> active --drain--> draining --retire--> retired
///          '----------------------abandon----------------------------> retired
///
/// and "A slot is retired only when it is `draining` and empty (`slot_not_empty` otherwise)";
/// "`abandon` is used by the job alone, when Graph refuses to create a `provisioning` slot's
/// FIC". `FICSlotState`'s doc comment draws one more edge, `draining --undrain--> active`
/// (docs/store.md lists undrain among the slot transitions; docs/slots.md says no command fires
/// it). Every other pair is an illegal transition; `retired` is final.
private struct Documented: Sendable, CustomTestStringConvertible {
    var from: FICSlotState
    var event: FICSlotEvent
    var to: FICSlotState
    var testDescription: String { "\(from) --\(event)--> \(to)" }
}

private let documentedTransitions: [Documented] = [
    Documented(from: .provisioning, event: .activate, to: .active),
    Documented(from: .active, event: .drain, to: .draining),
    Documented(from: .draining, event: .retire, to: .retired),
    Documented(from: .provisioning, event: .abandon, to: .retired),
    Documented(from: .draining, event: .undrain, to: .active),
]

@Suite struct FICSlotStateMachineTests {
    @Test("Each documented transition leads where the documentation says", arguments: documentedTransitions)
    fileprivate func documentedTransition(_ t: Documented) throws {
        #expect(try t.from.applying(t.event, assignedTenants: 0) == t.to)
    }

    @Test("Every event the documentation does not draw from a state is an illegal_slot_transition", arguments: FICSlotState.allCases)
    func undocumentedEventsAreRefused(state: FICSlotState) {
        let allowed = Set(documentedTransitions.filter { $0.from == state }.map(\.event))
        for event in FICSlotEvent.allCases where !allowed.contains(event) {
            #expect(throws: BrokerError(.illegalSlotTransition, ""), "\(state) + \(event)") {
                _ = try state.applying(event, assignedTenants: 0)
            }
        }
    }

    @Test("A retired slot is final: no event moves it, whatever it is asked")
    func retiredIsFinal() {
        for event in FICSlotEvent.allCases {
            #expect(throws: BrokerError(.illegalSlotTransition, ""), "\(event)") {
                _ = try FICSlotState.retired.applying(event, assignedTenants: 0)
            }
        }
    }

    @Test("slot add: provisioning, then active once the FIC is proven")
    func addScript() throws {
        var slot = FICSlotState.provisioning
        #expect(!slot.isServing && !slot.acceptsTenants && slot.countsTowardsLimit)
        slot = try slot.applying(.activate, assignedTenants: 0)
        #expect(slot == .active)
        #expect(slot.isServing && slot.acceptsTenants && slot.countsTowardsLimit)
    }

    @Test("slot drain then retire: a draining slot keeps serving its tenants, and is retired only once empty")
    func drainAndRetireScript() throws {
        var slot = FICSlotState.active
        // Draining a slot that serves tenants is the point of a drain: their count does not matter.
        slot = try slot.applying(.drain, assignedTenants: 25)
        #expect(slot == .draining)
        #expect(slot.isServing && !slot.acceptsTenants && slot.countsTowardsLimit)
        #expect(throws: BrokerError(.slotNotEmpty, "")) { _ = try slot.applying(.retire, assignedTenants: 1) }
        slot = try slot.applying(.retire, assignedTenants: 0)
        #expect(slot == .retired)
        #expect(!slot.isServing && !slot.acceptsTenants && !slot.countsTowardsLimit)
    }

    @Test("slot rotate: the new slot goes provisioning to active, the old active to draining to retired")
    func rotateScript() throws {
        var new = FICSlotState.provisioning
        var old = FICSlotState.active
        new = try new.applying(.activate, assignedTenants: 0)  // create_credential, prove_credential, activate
        old = try old.applying(.drain, assignedTenants: 12)  // start_drain
        #expect(new.acceptsTenants && !old.acceptsTenants)
        #expect(new.isServing && old.isServing)  // both serve while tenants move
        old = try old.applying(.retire, assignedTenants: 0)  // move_tenants emptied it; retire
        #expect(old == .retired && new == .active)
    }

    @Test("A provisioning slot whose FIC Graph refuses is abandoned: retired, and no longer counted")
    func abandonScript() throws {
        let slot = try FICSlotState.provisioning.applying(.abandon, assignedTenants: 0)
        #expect(slot == .retired)
        #expect(!slot.countsTowardsLimit)
    }

    @Test("An undrained slot serves and takes tenants again")
    func undrainScript() throws {
        let slot = try FICSlotState.draining.applying(.undrain, assignedTenants: 7)
        #expect(slot == .active)
        #expect(slot.isServing && slot.acceptsTenants)
    }

    @Test("The states' table in docs/slots.md: who serves, who takes new tenants, who counts toward 20")
    func stateTable() {
        let table: [FICSlotState: (serves: Bool, takesNewTenants: Bool, counts: Bool)] = [
            .provisioning: (false, false, true),
            .active: (true, true, true),
            .draining: (true, false, true),
            .retired: (false, false, false),
        ]
        #expect(Set(table.keys) == Set(FICSlotState.allCases))
        for (state, row) in table {
            #expect(state.isServing == row.serves, "\(state) serves")
            #expect(state.acceptsTenants == row.takesNewTenants, "\(state) takes new tenants")
            #expect(state.countsTowardsLimit == row.counts, "\(state) counts toward 20")
        }
    }

    @Test("At most 20 non-retired slots per application: the 21st is slot_limit_reached")
    func slotLimit() throws {
        for count in 0..<20 { try FICSlot.checkCanCreate(nonRetiredCount: count) }
        #expect(throws: BrokerError(.slotLimitReached, "")) { try FICSlot.checkCanCreate(nonRetiredCount: 20) }
        #expect(throws: BrokerError(.slotLimitReached, "")) { try FICSlot.checkCanCreate(nonRetiredCount: 21) }
    }

    @Test("Slot ids follow Graph's FIC name rules: 3-120 characters of [A-Za-z0-9_-]")
    func slotIDValidation() {
        #expect(FICSlotID(rawValue: "fic-01") != nil)
        #expect(FICSlotID(rawValue: "a_b") != nil)
        #expect(FICSlotID(rawValue: String(repeating: "a", count: 120)) != nil)
        #expect(FICSlotID(rawValue: "ab") == nil)
        #expect(FICSlotID(rawValue: "has space") == nil)
        #expect(FICSlotID(rawValue: "fic.1") == nil)
        #expect(FICSlotID(rawValue: "ficé") == nil)
        #expect(FICSlotID(rawValue: String(repeating: "a", count: 121)) == nil)
    }
}
