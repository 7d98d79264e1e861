import BrokerServer
import Foundation
import SwiftASN1
import Testing
import X509
import FedBrokerTestSupport

/// What identity a client certificate yields (docs/protocol.md, "Caller identity"), the RFC 4514
/// form of subjects, and the CRL: pure logic over certificates made in memory, no sockets.
@Suite struct CallerIdentityTests {
    let pki: LocalPKI
    init() throws { pki = try LocalPKI() }

    func identity(_ source: CallerIdentitySource, subject: DistinguishedName, uris: [String] = []) throws -> CallerIdentity {
        try source.identity(of: try pki.issue(subject: subject, uris: uris).certificate)
    }

    func refusal(_ source: CallerIdentitySource, subject: DistinguishedName, uris: [String] = []) throws -> CallerCertificateRefusal.Code? {
        do {
            _ = try identity(source, subject: subject, uris: uris)
            return nil
        } catch let refusal as CallerCertificateRefusal {
            return refusal.code
        }
    }

    @Test("The URI SAN is preferred; without one the whole subject is the identity, in RFC 4514 form")
    func sources() throws {
        let subject = try DistinguishedName {
            CountryName("GB")
            OrganizationName("Contoso")
            CommonName("billing")
        }
        let spiffe = "spiffe://isv.example/ns/prod/sa/billing"
        #expect(try identity(.uriOrSubject, subject: subject, uris: [spiffe]).name == spiffe)
        #expect(try identity(.uriOrSubject, subject: subject).name == "CN=billing,O=Contoso,C=GB")
        #expect(try identity(.subject, subject: subject, uris: [spiffe]).name == "CN=billing,O=Contoso,C=GB")
        #expect(try identity(.uri, subject: subject, uris: [spiffe]).name == spiffe)
        #expect(try refusal(.uri, subject: subject) == .noIdentity)
    }

    @Test("Certificates that differ only in O are distinct callers")
    func organizationMatters() throws {
        let a = try identity(.uriOrSubject, subject: try DistinguishedName { OrganizationName("Contoso"); CommonName("billing") })
        let b = try identity(.uriOrSubject, subject: try DistinguishedName { OrganizationName("Fabrikam"); CommonName("billing") })
        #expect(a != b)
        #expect(a.name == "CN=billing,O=Contoso")
    }

    @Test("A certificate that yields no identity is refused, never mapped to the anonymous one")
    func noIdentity() throws {
        let empty = DistinguishedName()
        #expect(try refusal(.uriOrSubject, subject: empty) == .noIdentity)
        #expect(try refusal(.subject, subject: empty, uris: ["spiffe://isv/x"]) == .noIdentity)
        // A subject without a CN names no caller, whatever else it holds; with a URI SAN it does not matter.
        #expect(try refusal(.uriOrSubject, subject: try DistinguishedName { OrganizationName("Contoso") }) == .noIdentity)
        #expect(try identity(.uriOrSubject, subject: try DistinguishedName { OrganizationName("Contoso") }, uris: ["spiffe://isv/x"]).name == "spiffe://isv/x")
    }

    @Test("Two URI SANs, a URI SAN that is not a URI, or an identity over 512 bytes are refused")
    func invalidIdentities() throws {
        let subject = try DistinguishedName { CommonName("x") }
        #expect(try refusal(.uriOrSubject, subject: subject, uris: ["spiffe://a/1", "spiffe://a/2"]) == .ambiguousIdentity)
        #expect(try refusal(.uriOrSubject, subject: subject, uris: ["CN=billing"]) == .invalidIdentity)
        #expect(try refusal(.uriOrSubject, subject: subject, uris: ["spiffe://a/b c"]) == .invalidIdentity)
        #expect(try refusal(.uriOrSubject, subject: subject, uris: ["spiffe://a/" + String(repeating: "x", count: 520)]) == .invalidIdentity)
        let long = try DistinguishedName { CommonName(String(repeating: "y", count: 60)); OrganizationalUnitName(String(repeating: "z", count: 60)) }
        var huge = long
        for _ in 0..<5 { huge.append(contentsOf: long) }
        #expect(try refusal(.subject, subject: huge) == .invalidIdentity)
    }

    @Test("RFC 4514: escapes, multi-valued RDNs, unknown types as OIDs, everything outside printable ASCII as \\XX")
    func rfc4514() throws {
        let name = try DistinguishedName {
            DomainComponent("example")
            OrganizationName("A, B + \"C\"; <D> \\ E")
            OrganizationalUnitName(" x")
            CommonName("#lead and trail ")
        }
        #expect(name.rfc4514String == ##"CN=\#lead and trail\ ,OU=\ x,O=A\, B \+ \"C\"\; \<D\> \\ E,DC=example"##)
        let unicode = try DistinguishedName { CommonName("Jérôme\u{0}") }
        #expect(unicode.rfc4514String == #"CN=J\C3\A9r\C3\B4me\00"#)
        #expect(unicode.rfc4514String.utf8.allSatisfy { $0 < 0x80 })
        let multi = DistinguishedName([
            RelativeDistinguishedName([
                .init(type: .RDNAttributeType.commonName, utf8String: "a"), .init(type: .RDNAttributeType.organizationalUnitName, utf8String: "b"),
            ])
        ])
        #expect(multi.rfc4514String == "CN=a+OU=b" || multi.rfc4514String == "OU=b+CN=a")
        let other = DistinguishedName([RelativeDistinguishedName(.init(type: [1, 2, 3, 4], utf8String: "v"))])
        // (Formatting does not require a CN; only taking a subject as an identity does.)
        #expect(other.rfc4514String == "1.2.3.4=v")
        let uid = DistinguishedName([RelativeDistinguishedName(.init(type: [0, 9, 2342, 19_200_300, 100, 1, 1], utf8String: "jdoe"))])
        #expect(uid.rfc4514String == "UID=jdoe")
    }

    @Test("Identities are equal only when their bytes are, not when Swift's String == says so")
    func byteEquality() {
        let composed = CallerIdentity(name: "caf\u{E9}")
        let decomposed = CallerIdentity(name: "cafe\u{301}")
        #expect(composed.name == decomposed.name)  // what String == says
        #expect(composed != decomposed)
        #expect(Set([composed, decomposed]).count == 2)
        #expect(CallerIdentity.unauthenticated.description == "(anonymous)")
    }

    @Test("A CRL of the client CA, verified by its signature, revokes exactly the serials it lists")
    func crl() throws {
        let revoked = try pki.issue("revoked", server: false).certificate
        let kept = try pki.issue("kept", server: false).certificate
        let pem = try pki.crlPEM(revoking: [revoked.serialNumber])
        let list = try CertificateRevocationList(contents: Array(pem.utf8), issuers: [pki.ca])
        #expect(list.isRevoked(revoked))
        #expect(!list.isRevoked(kept))
        #expect(list.expired(at: Date()) == nil)
        #expect(list.expired(at: Date().addingTimeInterval(7200)) != nil)

        // Another CA's certificate with the same serial is not revoked by this CA's CRL.
        let other = try LocalPKI(name: "another CA")
        #expect(!list.isRevoked(try other.issue(subject: try DistinguishedName { CommonName("x") }).certificate))

        // A CRL signed by a CA that server.clientCA does not hold, or tampered with, is refused.
        #expect(throws: CertificateRevocationList.Failure.self) {
            _ = try CertificateRevocationList(contents: Array(try other.crlPEM(revoking: []).utf8), issuers: [pki.ca])
        }
        var der = try PEMDocument(pemString: pem).derBytes
        der[der.count / 3] ^= 0x01
        #expect(throws: CertificateRevocationList.Failure.self) { _ = try CertificateRevocationList(contents: der, issuers: [pki.ca]) }
        #expect(throws: CertificateRevocationList.Failure.self) { _ = try CertificateRevocationList(contents: Array("junk".utf8), issuers: [pki.ca]) }
    }

    @Test("During a CA's re-key (two CA certificates, one subject) a CRL signed by either key loads, and revokes only what that key issued")
    func crlDuringReKey() throws {
        let old = try LocalPKI(name: "re-keyed CA")
        let new = try LocalPKI(name: "re-keyed CA")
        #expect(old.ca.subject == new.ca.subject && old.ca.publicKey != new.ca.publicKey)
        let subject = try DistinguishedName { CommonName("svc") }
        let serial = Certificate.SerialNumber(bytes: [0x42, 0x17])
        let newLeaf = try new.issue(subject: subject, serialNumber: serial).certificate
        let oldLeaf = try old.issue(subject: subject, serialNumber: serial).certificate
        // The new key's CRL, with the old CA certificate listed first in server.clientCA.
        let list = try CertificateRevocationList(contents: Array(try new.crlPEM(revoking: [serial]).utf8), issuers: [old.ca, new.ca])
        #expect(list.isRevoked(newLeaf))
        #expect(!list.isRevoked(oldLeaf), "the old key's certificate with the same serial is not the one revoked")
        let oldList = try CertificateRevocationList(contents: Array(try old.crlPEM(revoking: [serial]).utf8), issuers: [old.ca, new.ca])
        #expect(oldList.isRevoked(oldLeaf) && !oldList.isRevoked(newLeaf))
    }

    @Test("Per-caller caps count each caller apart and free what is released")
    func admission() {
        let admission = CallerAdmission(limits: .init(maximumConnections: 2, maximumRequests: 1))
        let a = CallerIdentity(name: "spiffe://t/a"), b = CallerIdentity(name: "spiffe://t/b")
        #expect(admission.openConnection(a))
        #expect(admission.openConnection(a))
        #expect(!admission.openConnection(a))
        #expect(admission.openConnection(b))
        admission.closeConnection(a)
        #expect(admission.openConnection(a))
        #expect(admission.startRequest(a))
        #expect(!admission.startRequest(a))
        #expect(admission.startRequest(b))
        admission.finishRequest(a)
        #expect(admission.startRequest(a))
        #expect(admission.usage(of: a) == (2, 1))
    }

    @Test("Refusals are logged once per interval per kind, with the count left out since")
    func logRateLimit() {
        var limit = LogRateLimit(interval: 10)
        let start = Date(timeIntervalSince1970: 1_800_000_000)
        #expect(limit.admit("a", at: start) == 0)
        #expect(limit.admit("a", at: start.addingTimeInterval(1)) == nil)
        #expect(limit.admit("a", at: start.addingTimeInterval(2)) == nil)
        #expect(limit.admit("b", at: start.addingTimeInterval(2)) == 0)
        #expect(limit.admit("a", at: start.addingTimeInterval(10)) == 2)
        #expect(limit.admit("a", at: start.addingTimeInterval(11)) == nil)
    }
}
