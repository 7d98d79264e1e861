import AdminAPIModel
import AsyncHTTPClient
import AzureHTTP
import AzureIdentity
import BrokerStore
import FedBrokerCore
import Foundation
import KeyVault
import Logging

/// The admin API's operations (the generated `APIProtocol`), over the store and the validator.
///
/// Every write names the version it was decided on (ETag / If-Match) and the staff member who
/// asked, and goes through one store transaction that also writes its audit record.
struct AdminHandler: APIProtocol {
    let store: any BrokerStore
    let validator: TenantValidator
    let environment: AzureEnvironment
    let configuration: AdminAPIConfiguration
    let vaultURLCheck: KeyVaultClient
    let clock: any WallClock
    let logger: Logger
    /// Wakes this replica's slot-job runner, so a submitted job starts at once.
    let slotJobSubmitted: @Sendable () -> Void

    init(
        store: any BrokerStore, environment: AzureEnvironment, configuration: AdminAPIConfiguration, httpClient: HTTPClient,
        clock: any WallClock, slotJobSubmitted: @escaping @Sendable () -> Void = {}, logger: Logger
    ) {
        self.slotJobSubmitted = slotJobSubmitted
        self.store = store
        self.environment = environment
        self.configuration = configuration
        self.validator = TenantValidator(
            environment: environment, httpClient: httpClient, clock: clock, timeout: configuration.validationTimeout)
        self.vaultURLCheck = KeyVaultClient(httpClient: httpClient, clock: clock, configuration: .init(environment: environment))
        self.clock = clock
        self.logger = logger
    }

    /// Who is asking (set by `AdminMiddleware` before any operation that needs a principal runs).
    var actor: String {
        get throws(AdminProblem) {
            guard let principal = StaffPrincipal.current else { throw .unauthenticated("no authenticated principal") }
            return principal.auditActor
        }
    }

    /// Who is asking, for log lines: the object id only (names are personal data; the audit
    /// trail has them).
    var logActor: String { StaffPrincipal.current.map { "staff:\($0.objectID)" } ?? "-" }

    // MARK: Health

    func livez(_ input: Operations.Livez.Input) async throws -> Operations.Livez.Output {
        .ok(.init(body: .json(.init(status: .ok))))
    }

    func readyz(_ input: Operations.Readyz.Input) async throws -> Operations.Readyz.Output {
        do {
            _ = try await store.latestChangeSequence()
            return .ok(.init(body: .json(.init(status: .ok))))
        } catch {
            return .serviceUnavailable(.init(body: .json(.init(status: .unavailable, detail: "the store does not answer"))))
        }
    }

    // MARK: Shared checks

    /// The version an `If-Match` names (`"v7"`), nil without one; 412 for one this API did not issue.
    static func version(ifMatch: String?) throws(AdminProblem) -> RecordVersion? {
        guard let ifMatch else { return nil }
        let trimmed = ifMatch.trimmingCharacters(in: .whitespaces)
        guard trimmed.hasPrefix("\"v"), trimmed.hasSuffix("\""), trimmed.count > 3, trimmed.count < 24,
            let number = Int64(trimmed.dropFirst(2).dropLast()), number >= 1
        else {
            throw AdminProblem(BrokerError(.versionConflict, "If-Match must be an ETag this API issued, like \"v3\""))
        }
        return RecordVersion(rawValue: number)
    }

    /// As `version(ifMatch:)`, for the changes that need one: 428 without it.
    static func requiredVersion(ifMatch: String?) throws(AdminProblem) -> RecordVersion {
        guard let version = try version(ifMatch: ifMatch) else { throw .ifMatchRequired }
        return version
    }

    static func etag(_ version: RecordVersion) -> String { "\"v\(version.rawValue)\"" }

    /// Fails with 412 when `expected` is given and the record moved on.
    static func check(_ expected: RecordVersion?, against current: RecordVersion, _ what: String) throws(AdminProblem) {
        if let expected, expected != current {
            throw AdminProblem(
                BrokerError(.versionConflict, "\(what) is at \(etag(current)), not \(etag(expected)): read it again and decide again"))
        }
    }

    static func tenantID(_ raw: String) throws(AdminProblem) -> TenantID {
        guard let id = TenantID(rawValue: raw) else { throw .notFound("no tenant with that id") }
        return id
    }

    static func limit(_ value: Int?) throws(AdminProblem) -> Int {
        let limit = value ?? 100
        guard (1...500).contains(limit) else { throw .invalid("limit must be 1-500") }
        return limit
    }

    /// An opaque cursor: base64url of the position it stands for.
    static func cursor(_ position: String) -> String { Base64URL.encode(Array(position.utf8)) }

    static func position(ofCursor cursor: String?) throws(AdminProblem) -> String? {
        guard let cursor else { return nil }
        guard let bytes = Base64URL.decode(cursor), let text = String(bytes: bytes, encoding: .utf8) else {
            throw .badRequest("cursor is not one this API issued")
        }
        return text
    }

    /// A vault URL and key name from a request, checked as the broker will use them.
    func keyReference(vaultURI: String, keyName: String) throws(AdminProblem) -> KeyReference {
        let key: KeyReference
        do {
            key = try KeyReference(vaultURL: vaultURI, keyName: keyName)
        } catch let error as BrokerError {
            throw AdminProblem(error)
        } catch {
            throw .invalid("vault_uri or key_name is not valid")
        }
        do {
            try vaultURLCheck.checkVaultURL(key.vaultURL)
        } catch {
            throw .invalid(
                "vault_uri must be an https Key Vault URL on \(environment.vaultHostSuffixes.joined(separator: ", "))")
        }
        return key
    }
}
