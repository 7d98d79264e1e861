import Testing

@testable import FedBrokerCore

private func makeKey(_ name: String = "cmk", version: String? = nil, vault: String = "https://contoso.vault.azure.net") -> KeyReference {
    try! KeyReference(vaultURL: vault, keyName: name, keyVersion: version)
}

private func makeStateMachine(_ state: TenantState = .registered, wasActivated: Bool = false) -> TenantLifecycle {
    TenantLifecycle(state: state, key: makeKey(), wasActivated: wasActivated)
}

private let allEvents: [TenantEvent] =
    [.validationSucceeded, .activate, .accessRestored, .disable, .enable, .offboard]
    + SuspensionReason.allCases.map(TenantEvent.accessRevoked)

/// The full transition table: every (state, event) pair not listed is illegal.
private func expectedTarget(_ state: TenantState, _ event: TenantEvent, wasActivated: Bool) -> TenantState? {
    switch (state, event) {
    case (.registered, .validationSucceeded), (.validated, .validationSucceeded): .validated
    case (.validated, .activate): .active
    case (.active, .accessRevoked): .suspended
    case (.suspended, .accessRestored): .active
    case (.registered, .disable), (.validated, .disable), (.active, .disable), (.suspended, .disable): .disabled
    case (.disabled, .enable): wasActivated ? .suspended : .registered
    case (.offboarded, _): nil
    case (_, .offboard): .offboarded
    default: nil
    }
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

    @Test("A detected revocation suspends and stops serving; restored access resumes")
    func suspendAndRestore() throws {
        var machine = makeStateMachine(.active)
        let suspended = try machine.apply(.accessRevoked(.roleRemoved))
        #expect(suspended == .init(from: .active, to: .suspended, operation: "tenant.suspended.role_removed", effect: .stopServing))
        #expect(try machine.apply(.accessRestored).effect == .startServing)
        #expect(machine.state == .active)
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

    @Test("A tenant that was ever active comes back from disabled suspended, not active or registered")
    func reenableAfterActivation() throws {
        var machine = makeStateMachine(.active)
        _ = try machine.apply(.disable)
        #expect(try machine.apply(.enable).to == .suspended)
        var fresh = makeStateMachine(.validated)
        _ = try fresh.apply(.disable)
        #expect(try fresh.apply(.enable).to == .registered)
    }

    @Test("Before activation any key may replace the key; a validated tenant must validate again")
    func keyChangeBeforeActivation() throws {
        var machine = makeStateMachine(.validated)
        let change = try machine.changeKey(to: makeKey("other", vault: "https://fabrikam.vault.azure.net"))
        #expect(change.to == .registered)
        #expect(machine.key.keyName == "other")
    }

    @Test("After activation the key's vault and name are locked; only its version may move",
          arguments: [TenantState.active, .suspended, .disabled])
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

    @Test("Lock survives the full cycle: activated, disabled, re-enabled, still locked")
    func lockIsPermanent() throws {
        var machine = makeStateMachine()
        _ = try machine.apply(.validationSucceeded)
        _ = try machine.apply(.activate)
        _ = try machine.apply(.disable)
        _ = try machine.apply(.enable)
        #expect(throws: BrokerError(.keyLocked, "")) { _ = try machine.changeKey(to: makeKey("other")) }
    }
}
