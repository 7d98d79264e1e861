import FedBrokerCore

/// Any bytes as a wrapped-key blob. Asserts: parsing never traps; a blob that parses serializes
/// back to exactly its own bytes (the format has one encoding per value, so nothing an attacker
/// adds can survive a round trip unnoticed) and parses again to the same value; its fields obey
/// the grammars the vault path and the store lookup rely on.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzEnvelope(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    guard let envelope = try? WrappedKeyEnvelope(parsing: bytes) else { return 0 }
    let again: [UInt8]
    do {
        again = try envelope.serialized()
    } catch {
        fatalError("a parsed envelope does not serialize: \(error)")
    }
    guard again == bytes else { fatalError("round trip changed the blob: \(bytes.count) bytes in, \(again.count) out") }
    guard (try? WrappedKeyEnvelope(parsing: again)) == envelope else { fatalError("the re-serialized blob parses differently") }
    guard KeyReference.isValidName(envelope.keyName), KeyReference.isValidVersion(envelope.keyVersion) else {
        fatalError("a key name or version outside Key Vault's grammar was accepted")
    }
    guard TenantID(rawValue: envelope.tenantID) != nil else { fatalError("a tenant outside TenantID's grammar was accepted") }
    // The associated data is computed for every unwrap, with or without a context.
    guard (try? envelope.associatedData(context: nil)) != nil, (try? envelope.associatedData(context: Array(bytes.prefix(64)))) != nil
    else { fatalError("associated data of a parsed envelope failed") }
    return 0
}
