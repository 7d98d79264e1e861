import BrokerClient
import BrokerWire
import Foundation
import FedBrokerTestSupport

/// `FedBrokerClient` as the end-to-end worlds hand it out: the same calls, with every data key
/// and blob that passes through written to the secret ledger (TestLogging), so that the log
/// check knows what must never appear in a log line. Nothing is recorded when the run does not
/// capture logs.
final class LedgeredClient: Sendable {
    let client: FedBrokerClient

    init(_ client: FedBrokerClient) { self.client = client }

    func generateDataKey(tenant: String, context: [UInt8]? = nil, deadline: Date) async throws -> (plaintext: [UInt8], blob: [UInt8], keyID: String) {
        let r = try await call(.with { $0.generateDataKey = .with { $0.tenant = tenant; if let context { $0.context = Data(context) } } }, deadline: deadline)
        return (Array(r.generateDataKey.plaintext), Array(r.generateDataKey.blob), r.generateDataKey.keyID)
    }

    func wrap(tenant: String, plaintext: [UInt8], context: [UInt8]? = nil, deadline: Date) async throws -> [UInt8] {
        Array(try await call(.with { $0.wrap = .with { $0.tenant = tenant; $0.plaintext = Data(plaintext); if let context { $0.context = Data(context) } } }, deadline: deadline).wrap.blob)
    }

    func unwrap(_ blob: [UInt8], context: [UInt8]? = nil, deadline: Date) async throws -> [UInt8] {
        Array(try await call(.with { $0.unwrap = .with { $0.blob = Data(blob); if let context { $0.context = Data(context) } } }, deadline: deadline).unwrap.plaintext)
    }

    func rewrap(_ blob: [UInt8], context: [UInt8]? = nil, deadline: Date) async throws -> [UInt8] {
        Array(try await call(.with { $0.rewrap = .with { $0.blob = Data(blob); if let context { $0.context = Data(context) } } }, deadline: deadline).rewrap.blob)
    }

    func keyStatus(tenant: String, deadline: Date) async throws -> WireResponse {
        try await call(.with { $0.keyStatus = .with { $0.tenant = tenant } }, deadline: deadline)
    }

    func health(deadline: Date) async throws -> String {
        try await client.health(deadline: deadline)
    }

    func close() async { await client.close() }

    func call(_ request: WireRequest, deadline: Date) async throws -> WireResponse {
        if let ledger = TestLogging.ledger {
            switch request.method {
            case .wrap(let r): ledger.record(bytes: Array(r.plaintext), kind: "wrap-plaintext")
            case .unwrap(let r): ledger.record(blob: Array(r.blob), kind: "presented-blob")
            case .rewrap(let r): ledger.record(blob: Array(r.blob), kind: "presented-blob")
            default: break
            }
        }
        let response = try await client.call(request, deadline: deadline)
        if let ledger = TestLogging.ledger {
            switch response.result {
            case .generateDataKey(let r):
                ledger.record(bytes: Array(r.plaintext), kind: "data-key")
                ledger.record(blob: Array(r.blob), kind: "blob")
            case .wrap(let r): ledger.record(blob: Array(r.blob), kind: "blob")
            case .unwrap(let r): ledger.record(bytes: Array(r.plaintext), kind: "data-key")
            case .rewrap(let r): ledger.record(blob: Array(r.blob), kind: "blob")
            default: break
            }
        }
        return response
    }
}

extension BrokerCallError {
    /// The broker's answer, when the failure is one (nil for a deadline or a lost connection).
    var wireStatus: WireStatus? {
        if case .status(let status) = self { status } else { nil }
    }
}
