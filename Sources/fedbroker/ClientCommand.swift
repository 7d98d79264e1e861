import ArgumentParser
import BrokerClient
import BrokerWire
import Foundation
import NIOSSL

/// `fedbroker client METHOD`: one call to a running broker from the shell.
struct ClientCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "client",
        abstract: "Call a running fedbroker: health, key-status, generate-data-key, wrap, unwrap, rewrap.",
        discussion: """
            Prints the answer as JSON (bytes in base64). A failure prints the broker's status (code, reason, \
            message, retryable) on stderr and exits 1. Example:
              fedbroker client generate-data-key --tenant customer-1 --connect 127.0.0.1:7443 \\
                --tls-cert svc.pem --tls-key svc-key.pem --ca ca.pem
            """
    )

    enum Method: String, ExpressibleByArgument, CaseIterable {
        case health, keyStatus = "key-status", generateDataKey = "generate-data-key", wrap, unwrap, rewrap
    }

    @Argument(help: "health | key-status | generate-data-key | wrap | unwrap | rewrap")
    var method: Method

    @Option(name: .long, help: "The broker, HOST:PORT.") var connect: String = "127.0.0.1:7443"
    @Option(name: .long, help: "Client certificate (PEM): the caller's identity.") var tlsCert: String?
    @Option(name: .long, help: "Its private key (PEM).") var tlsKey: String?
    @Option(name: .long, help: "CA (PEM) that issued the broker's certificate.") var ca: String?
    @Option(name: .long, help: "Host name to verify the broker's certificate against (default: the host of --connect).") var serverName: String?
    @Flag(name: .long, help: "No TLS (a loopback broker started with --plaintext).") var plaintext = false
    @Option(name: .long, help: "Tenant id (generate-data-key, wrap, key-status).") var tenant: String?
    @Option(name: .long, help: "Base64 plaintext (wrap).") var plaintextBase64: String?
    @Option(name: .long, help: "Base64 blob (unwrap, rewrap).") var blob: String?
    @Option(name: .long, help: "Context the blob is bound to (UTF-8).") var context: String?
    @Option(name: .long, help: "Seconds to wait.") var timeout: Double = 10

    func validate() throws {
        guard ServeCommand.split(connect) != nil else { throw ValidationError("--connect must be HOST:PORT") }
        if !plaintext, tlsCert == nil || tlsKey == nil || ca == nil { throw ValidationError("give --tls-cert, --tls-key and --ca, or --plaintext") }
        switch method {
        case .keyStatus, .generateDataKey: if tenant == nil { throw ValidationError("\(method.rawValue) needs --tenant") }
        case .wrap:
            if tenant == nil || plaintextBase64.flatMap({ Data(base64Encoded: $0) }) == nil {
                throw ValidationError("wrap needs --tenant and --plaintext-base64 (base64)")
            }
        case .unwrap, .rewrap: if blob.flatMap({ Data(base64Encoded: $0) }) == nil { throw ValidationError("\(method.rawValue) needs --blob (base64)") }
        case .health: break
        }
    }

    func run() async throws {
        let (host, port) = ServeCommand.split(connect)!
        var tls: TLSConfiguration?
        if !plaintext {
            var c = TLSConfiguration.makeClientConfiguration()
            c.trustRoots = .file(ca!)
            c.certificateChain = try NIOSSLCertificate.fromPEMFile(tlsCert!).map { .certificate($0) }
            c.privateKey = .privateKey(try NIOSSLPrivateKey(file: tlsKey!, format: .pem))
            tls = c
        }
        let client = FedBrokerClient(configuration: .init(host: host, port: port, tls: tls, serverHostname: serverName))
        let deadline = Date().addingTimeInterval(timeout)
        let contextBytes = context.map { Array($0.utf8) }
        var output: [String: Any] = [:]
        do {
            switch method {
            case .health:
                output["status"] = try await client.health(deadline: deadline)
            case .keyStatus:
                let r = try await client.keyStatus(tenant: tenant!, deadline: deadline).keyStatus
                output = ["tenant": r.tenant, "state": r.state, "key": r.keyID, "slot": r.slot]
            case .generateDataKey:
                let r = try await client.generateDataKey(tenant: tenant!, context: contextBytes, deadline: deadline)
                output = ["plaintext": Data(r.plaintext).base64EncodedString(), "blob": Data(r.blob).base64EncodedString(), "keyId": r.keyID]
            case .wrap:
                let blob = try await client.wrap(tenant: tenant!, plaintext: Array(Data(base64Encoded: plaintextBase64 ?? "") ?? Data()), context: contextBytes, deadline: deadline)
                output["blob"] = Data(blob).base64EncodedString()
            case .unwrap:
                let plaintext = try await client.unwrap(Array(Data(base64Encoded: blob!)!), context: contextBytes, deadline: deadline)
                output["plaintext"] = Data(plaintext).base64EncodedString()
            case .rewrap:
                let fresh = try await client.rewrap(Array(Data(base64Encoded: blob!)!), context: contextBytes, deadline: deadline)
                output["blob"] = Data(fresh).base64EncodedString()
            }
        } catch let BrokerCallError.status(status) {
            await client.close()
            let failure: [String: Any] = [
                "code": "\(status.code)", "reason": "\(status.reason)", "message": status.message, "retryable": status.retryable,
            ]
            FileHandle.standardError.write(try JSONSerialization.data(withJSONObject: failure, options: [.sortedKeys]) + Data("\n".utf8))
            throw ExitCode.failure
        } catch {
            await client.close()
            FileHandle.standardError.write(Data("fedbroker client: \(error)\n".utf8))
            throw ExitCode.failure
        }
        await client.close()
        FileHandle.standardOutput.write(try JSONSerialization.data(withJSONObject: output, options: [.sortedKeys]) + Data("\n".utf8))
    }
}
