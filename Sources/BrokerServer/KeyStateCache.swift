import FedBrokerCore
import Foundation
import KeyVault
import Synchronization

/// What the broker last learned about each customer key it wraps with: enabled, and its
/// validity window, from a GET of the key.
///
/// Why it exists: Key Vault lets wrapkey succeed on a disabled key (unwrap is what it refuses),
/// so a broker that only watched wrap's answers would go on minting blobs nobody can open until
/// the customer enables the key again — silent data loss for the ISV. GenerateDataKey, Wrap and
/// Rewrap therefore consult this state first and refuse a key that is disabled, expired or not
/// yet valid.
///
/// The bound: a state is used for at most `maximumAge` seconds after it was read. From half that
/// age on, the next use also triggers a refresh in the background (so busy tenants never wait for
/// it); past `maximumAge` the use waits for a fresh read. Any refusal by the vault for the key
/// drops the state at once. A change the customer makes at the vault is thus obeyed within
/// `maximumAge` seconds of the next wrap.
final class KeyStateCache: Sendable {
    struct State: Sendable, Equatable {
        var enabled: Bool
        var notBefore: Date?
        var expires: Date?
        var readAt: Date

        /// Why a new data key must not be wrapped under this key now, or nil.
        func refusal(at now: Date) -> String? {
            if !enabled { return "is disabled" }
            if let expires, now >= expires { return "expired at \(expires)" }
            if let notBefore, now < notBefore { return "is not valid before \(notBefore)" }
            return nil
        }
    }

    enum Lookup: Equatable {
        /// Use it as is.
        case fresh(State)
        /// Use it, and refresh it in the background (unless a refresh is already under way).
        case refreshAhead(State)
        /// Read the key before using it (`last`: what was known, for when the read fails transiently).
        case stale(last: State?)
    }

    let maximumAge: Double
    private let entries = Mutex<[VaultKeyID: (state: State, refreshing: Bool)]>([:])

    init(maximumAge: Double) { self.maximumAge = max(maximumAge, 1) }

    func lookup(_ key: VaultKeyID, now: Date) -> Lookup {
        entries.withLock { entries in
            guard let entry = entries[key] else { return .stale(last: nil) }
            let age = now.timeIntervalSince(entry.state.readAt)
            if age < 0 || age >= maximumAge { return .stale(last: entry.state) }
            if age >= maximumAge / 2, !entry.refreshing {
                entries[key]?.refreshing = true
                return .refreshAhead(entry.state)
            }
            return .fresh(entry.state)
        }
    }

    func record(_ key: VaultKeyID, enabled: Bool, notBefore: Date?, expires: Date?, at now: Date) -> State {
        let state = State(enabled: enabled, notBefore: notBefore, expires: expires, readAt: now)
        entries.withLock { $0[key] = (state, false) }
        return state
    }

    /// A background refresh failed: the next use past half the age may try again.
    func refreshFailed(_ key: VaultKeyID) {
        entries.withLock { $0[key]?.refreshing = false }
    }

    /// The vault refused something about this vault's key `name`: every state of it is suspect.
    func invalidate(vaultURL: String, name: String) {
        entries.withLock { entries in
            for key in entries.keys where key.vaultURL == vaultURL && key.name.lowercased() == name.lowercased() {
                entries[key] = nil
            }
        }
    }

    var count: Int { entries.withLock { $0.count } }
}
