import SwiftASN1
import X509

extension DistinguishedName {
    /// The name in RFC 4514 form, the caller identity of a certificate without a URI SAN:
    /// RDNs from last to first, `,` between them and `+` inside a multi-valued one; attribute
    /// types by the short names RFC 4514 lists (CN, L, ST, O, OU, C, STREET, DC, UID), any other
    /// as its dotted OID; values escaped as §2.4 requires. Every byte outside printable ASCII is
    /// written `\XX` (RFC 4514 allows it), so the string is ASCII and two names compare equal
    /// exactly when their bytes do. A value that is not a string is `#` and the hex of its DER.
    ///
    /// swift-certificates' `description` is close but not this: it names emailAddress `E`, does
    /// not escape NUL or control characters, and prints other values its own way.
    public var rfc4514String: String {
        reversed().map { rdn in rdn.map(Self.rfc4514).joined(separator: "+") }.joined(separator: ",")
    }

    private static func rfc4514(_ attribute: RelativeDistinguishedName.Attribute) -> String {
        let type: String
        switch attribute.type {
        case .RDNAttributeType.commonName: type = "CN"
        case .RDNAttributeType.localityName: type = "L"
        case .RDNAttributeType.stateOrProvinceName: type = "ST"
        case .RDNAttributeType.organizationName: type = "O"
        case .RDNAttributeType.organizationalUnitName: type = "OU"
        case .RDNAttributeType.countryName: type = "C"
        case .RDNAttributeType.streetAddress: type = "STREET"
        case .RDNAttributeType.domainComponent: type = "DC"
        case [0, 9, 2342, 19_200_300, 100, 1, 1]: type = "UID"
        default: type = attribute.type.oidComponents.map(String.init).joined(separator: ".")
        }
        return "\(type)=\(value(attribute.value))"
    }

    private static func value(_ value: RelativeDistinguishedName.Attribute.Value) -> String {
        guard let text = String(value) else {
            var serializer = DER.Serializer()
            guard (try? serializer.serialize(ASN1Any(value))) != nil else { return "#" }
            return "#" + serializer.serializedBytes.map(hex).joined()
        }
        let bytes = Array(text.utf8)
        var out = ""
        for (index, byte) in bytes.enumerated() {
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "+"), UInt8(ascii: ","), UInt8(ascii: ";"), UInt8(ascii: "<"),
                UInt8(ascii: ">"), UInt8(ascii: "\\"):
                out += "\\" + String(UnicodeScalar(byte))
            case UInt8(ascii: "#") where index == 0:
                out += "\\#"
            case UInt8(ascii: " ") where index == 0 || index == bytes.count - 1:
                out += "\\ "
            case 0x21...0x7E, UInt8(ascii: " "):
                out += String(UnicodeScalar(byte))
            default:
                out += "\\" + hex(byte)
            }
        }
        return out
    }

    private static func hex(_ byte: UInt8) -> String {
        let digits = Array("0123456789ABCDEF")
        return String([digits[Int(byte >> 4)], digits[Int(byte & 0x0F)]])
    }
}
