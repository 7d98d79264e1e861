import Testing

@testable import FedBrokerCore

private func makeKey(_ name: String = "cmk", version: String? = nil, vault: String = "https://contoso.vault.azure.net") -> KeyReference {
    try! KeyReference(vaultURL: vault, keyName: name, keyVersion: version)
}

private func makeStateMachine(_ state: TenantState = .registered, wasActivated: Bool = false) -> TenantLifecycle {
    TenantLifecycle(state: state, key: makeKey(), wasActivated: wasActivated)
}

private let allEvents: [TenantEvent] =
    [.validationSucceeded, .activate, .accessRestored, .suspend, .restore, .offboard]
    + AccessLossReason.allCases.map(TenantEvent.accessLost)

/// One documented step: from `state` on `event` to `ifActivated` for a tenant that was ever
/// activated, `ifNeverActivated` for one that never was.
private struct DocumentedStep {
    let state: TenantState
    let event: TenantEvent
    let ifActivated: TenantState
    let ifNeverActivated: TenantState

    init(_ state: TenantState, _ event: TenantEvent, _ to: TenantState) {
        self.init(state, event, ifActivated: to, ifNeverActivated: to)
    }

    init(_ state: TenantState, _ event: TenantEvent, ifActivated: TenantState, ifNeverActivated: TenantState) {
        self.state = state
        self.event = event
        self.ifActivated = ifActivated
        self.ifNeverActivated = ifNeverActivated
    }
}

/// The lifecycle written out from its documentation (TenantState's doc comment and
/// docs/onboarding.md, "Tenant states"), not from the implementation's switch:
///
/// - registered → validated when a validation succeeds (again, for a validated tenant);
/// - validated → active on activation;
/// - active → access_lost when the broker sees the customer's side refuse it (any reason);
/// - access_lost → active when access works again (a re-probe, or an operator's validated restore);
/// - an operator suspends any tenant that is not offboarded or already suspended;
/// - suspended → active on an operator's restore for a tenant that was ever activated, registered
///   for one that never was; nothing else brings a suspended tenant back;
/// - any tenant but an offboarded one can be offboarded; offboarded is terminal.
///
/// Every (state, event) pair not listed is illegal.
private let documentedSteps: [DocumentedStep] =
    [
        DocumentedStep(.registered, .validationSucceeded, .validated),
        DocumentedStep(.validated, .validationSucceeded, .validated),
        DocumentedStep(.validated, .activate, .active),
        DocumentedStep(.accessLost, .accessRestored, .active),
        DocumentedStep(.registered, .suspend, .suspended),
        DocumentedStep(.validated, .suspend, .suspended),
        DocumentedStep(.active, .suspend, .suspended),
        DocumentedStep(.accessLost, .suspend, .suspended),
        DocumentedStep(.suspended, .restore, ifActivated: .active, ifNeverActivated: .registered),
        DocumentedStep(.registered, .offboard, .offboarded),
        DocumentedStep(.validated, .offboard, .offboarded),
        DocumentedStep(.active, .offboard, .offboarded),
        DocumentedStep(.accessLost, .offboard, .offboarded),
        DocumentedStep(.suspended, .offboard, .offboarded),
    ]
    + AccessLossReason.allCases.map { DocumentedStep(.active, .accessLost($0), .accessLost) }

private func expectedTarget(_ state: TenantState, _ event: TenantEvent, wasActivated: Bool) -> TenantState? {
    documentedSteps.first { $0.state == state && $0.event == event }.map { wasActivated ? $0.ifActivated : $0.ifNeverActivated }
}

@Suite struct TenantLifecycleStateMachineTests {
    @Test("Happy path: registered → validated → active, which starts serving")
    func onboarding() throws {
        var machine = makeStateMachine()
        #expect(try machine.apply(.validationSucceeded).to == .validated)
        let activation = try machine.apply(.activate)
        #expect(activation == .init(from: .validated, to: .active, operation: "tenant.activated", effect: .startServing))
        #expect(machine.wasActivated)
        #expect(machine.state.isServable)
    }

    @Test("A detected loss of access stops serving; access that works again resumes it, with its own audit names")
    func accessLostAndRestored() throws {
        var machine = makeStateMachine(.active)
        let lost = try machine.apply(.accessLost(.roleRemoved))
        #expect(lost == .init(from: .active, to: .accessLost, operation: "tenant.access_lost.role_removed", effect: .stopServing))
        #expect(!machine.state.isServable)
        let restored = try machine.apply(.accessRestored)
        #expect(restored == .init(from: .accessLost, to: .active, operation: "tenant.access_restored", effect: .startServing))
    }

    @Test("An operator's suspension is lifted by an operator's restore only, never by restored access")
    func suspensionIsTheOperators() throws {
        for start in [TenantState.active, .accessLost] {
            var machine = makeStateMachine(start)
            let suspended = try machine.apply(.suspend)
            #expect(suspended.to == .suspended)
            #expect(suspended.operation == "tenant.suspended")
            #expect(throws: BrokerError(.illegalTenantTransition, "")) { _ = try machine.apply(.accessRestored) }
            #expect(machine.state == .suspended)
            let restored = try machine.apply(.restore)
            #expect(restored == .init(from: .suspended, to: .active, operation: "tenant.restored", effect: .startServing))
        }
    }

    @Test("Exhaustive: every state × event either follows the table or throws illegalTenantTransition, unchanged",
          arguments: TenantState.allCases, [false, true])
    func exhaustiveTable(state: TenantState, wasActivated: Bool) {
        for event in allEvents {
            var machine = makeStateMachine(state, wasActivated: wasActivated)
            let activated = machine.wasActivated
            if let target = expectedTarget(state, event, wasActivated: activated) {
                let transition = try? machine.apply(event)
                #expect(transition?.to == target, "\(state) + \(event)")
                #expect(transition?.from == state)
                #expect(machine.state == target)
            } else {
                #expect(throws: BrokerError(.illegalTenantTransition, "")) { _ = try machine.apply(event) }
                #expect(machine.state == state, "an illegal event must not change the state")
            }
        }
    }

    @Test("Only a transition into or out of active changes serving")
    func servingEffects() throws {
        for state in TenantState.allCases {
            for event in allEvents {
                var machine = makeStateMachine(state)
                guard let transition = try? machine.apply(event) else { continue }
                let expected: TenantLifecycle.ServingEffect =
                    switch (transition.from == .active, transition.to == .active) {
                    case (false, true): .startServing
                    case (true, false): .stopServing
                    default: .none
                    }
                #expect(transition.effect == expected, "\(state) + \(event)")
            }
        }
    }

    @Test("Offboarded is terminal")
    func offboardedIsTerminal() {
        for event in allEvents {
            var machine = makeStateMachine(.offboarded)
            #expect(throws: BrokerError(.illegalTenantTransition, "")) { _ = try machine.apply(event) }
        }
        var machine = makeStateMachine(.offboarded)
        #expect(throws: BrokerError(.illegalTenantTransition, "")) { _ = try machine.changeKey(to: makeKey("other")) }
    }

    @Test("Restore brings an activated tenant back to active, and one never activated back to registered")
    func restoreAfterActivation() throws {
        var machine = makeStateMachine(.active)
        _ = try machine.apply(.suspend)
        #expect(try machine.apply(.restore).to == .active)
        var fresh = makeStateMachine(.validated)
        _ = try fresh.apply(.suspend)
        #expect(try fresh.apply(.restore).to == .registered)
        #expect(!fresh.wasActivated)
    }

    @Test("Before activation any key may replace the key; a validated tenant must validate again")
    func keyChangeBeforeActivation() throws {
        var machine = makeStateMachine(.validated)
        let change = try machine.changeKey(to: makeKey("other", vault: "https://fabrikam.vault.azure.net"))
        #expect(change.to == .registered)
        #expect(machine.key.keyName == "other")
    }

    @Test("After activation the key's vault and name are locked; only its version may move",
          arguments: [TenantState.active, .accessLost, .suspended])
    func keyLockedAfterActivation(state: TenantState) throws {
        var machine = makeStateMachine(state, wasActivated: true)
        #expect(throws: BrokerError(.keyLocked, "")) { _ = try machine.changeKey(to: makeKey("other")) }
        #expect(throws: BrokerError(.keyLocked, "")) {
            _ = try machine.changeKey(to: makeKey(vault: "https://evil.vault.azure.net"))
        }
        #expect(machine.key == makeKey(), "a refused change leaves the key as it was")
        let rotated = try machine.changeKey(to: makeKey(version: "abc123"))
        #expect(rotated.to == state)
        #expect(machine.key.keyVersion == "abc123")
    }

    @Test("Lock survives the full cycle: activated, suspended, restored, still locked")
    func lockIsPermanent() throws {
        var machine = makeStateMachine()
        _ = try machine.apply(.validationSucceeded)
        _ = try machine.apply(.activate)
        _ = try machine.apply(.suspend)
        _ = try machine.apply(.restore)
        #expect(throws: BrokerError(.keyLocked, "")) { _ = try machine.changeKey(to: makeKey("other")) }
    }
}
