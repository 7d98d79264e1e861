import BrokerWire
import FedBrokerCore
import SwiftProtobuf

/// Any bytes as a REQUEST frame's payload, read as the service reads it up to the store lookup:
/// the protobuf `Request`, the tenant string as a `TenantID`, an Unwrap or Rewrap blob as an
/// envelope, and the bounded echo of a tenant that is unknown. Asserts: nothing traps; a decoded
/// request re-encodes and decodes to the same value; an accepted tenant and the echo obey their
/// bounds.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRequest(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    guard let request = try? WireRequest(serializedBytes: bytes) else { return 0 }
    guard let encoded: [UInt8] = try? request.serializedBytes(), (try? WireRequest(serializedBytes: encoded)) == request else {
        fatalError("a decoded request does not survive re-encoding")
    }
    var tenant: String?
    var blob: [UInt8]?
    switch request.method {
    case .generateDataKey(let m): tenant = m.tenant
    case .wrap(let m): tenant = m.tenant
    case .keyStatus(let m): tenant = m.tenant
    case .unwrap(let m): blob = Array(m.blob)
    case .rewrap(let m): blob = Array(m.blob)
    default: break
    }
    if let tenant {
        if let id = TenantID(rawValue: tenant) {
            guard (1...128).contains(id.rawValue.utf8.count) else { fatalError("TenantID accepted \(id.rawValue.utf8.count) bytes") }
        }
        // What an unknown tenant's refusal and audit record carry.
        let echo = BoundedText.escaped(tenant, limit: 256)
        guard echo.unicodeScalars.count <= 256, !echo.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
            fatalError("the echoed tenant is unbounded or carries control characters")
        }
    }
    if let blob, let envelope = try? WrappedKeyEnvelope(parsing: blob) {
        guard TenantID(rawValue: envelope.tenantID) != nil, KeyReference.isValidVersion(envelope.keyVersion) else {
            fatalError("a blob with an ungrammatical tenant or version parsed")
        }
    }
    return 0
}
