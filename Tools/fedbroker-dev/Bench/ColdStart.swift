import AzureEmulator
import BrokerClient
import BrokerStore
import FedBrokerCore
import Foundation
import Logging
import FedBrokerTestSupport

/// Starts `fedbroker serve` as a fresh process on a store of many tenants and measures how long
/// it takes to serve its first key operation (the whole chain: IMDS, Entra, the vault) and how
/// much memory it holds then. The store lives on tmpfs where there is one (/dev/shm), so
/// seeding 10,000 tenants (30,000 durable transactions) does not wait on fsync; the broker reads
/// it the same either way.
struct ColdStart {
    let tenants: Int
    let slots: Int
    let directory: String
    let logger: Logger
    let note: (String) -> Void

    func run() async throws -> BenchResults.ColdStartResult {
        // The production binary, found before the store is seeded: this executable has no `serve`.
        let fedbroker = try DemoCommand.locate(nil)
        var emulatorConfiguration = AzureEmulator.Configuration()
        emulatorConfiguration.seedDefaultScenario = true
        return try await AzureEmulator.withRunning(configuration: emulatorConfiguration, logger: logger) { emulator, endpoints in
            guard let scenario = emulator.defaultScenario else { throw BenchError("the emulator seeded no scenario") }
            let dir = URL(fileURLWithPath: directory).appendingPathComponent(UUID().uuidString)
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: dir) }
            func file(_ name: String, _ contents: String) throws -> String {
                let path = dir.appendingPathComponent(name).path
                try contents.write(toFile: path, atomically: true, encoding: .utf8)
                return path
            }
            let emulatorCA = try file("emulator-ca.pem", emulator.pki.caCertificatePEM)

            note("cold start: seeding \(tenants) tenants on \(slots) slots in \(dir.path) …")
            let seedingStarted = Date()
            let store = try await SQLBrokerStore.open(.sqlite(path: dir.appendingPathComponent("broker.db").path), logger: logger)
            _ = try await store.migrate()
            try await BenchWorld.seed(store, scenario: scenario, extraTenants: tenants, slotCount: slots) { done in
                if done % 2000 == 0 { note("  \(done) tenants") }
            }
            _ = try await store.createCaller(
                Caller(id: BenchWorld.callerName, identity: LocalPKI.callerIdentity(BenchWorld.callerName), grants: [CallerGrant(operations: Set(KeyOperation.allCases), tenants: .all)]),
                actor: "bench")
            let registered = try await store.tenants().count
            try await store.close()
            note("  seeded \(registered) tenants in \(String(format: "%.1f", Date().timeIntervalSince(seedingStarted))) s")

            let pki = try LocalPKI()
            let server = try pki.leafPEM("localhost", server: true)
            let certPath = try file("server.pem", server.certificate)
            let keyPath = try file("server-key.pem", server.privateKey)
            let clientCA = try file("client-ca.pem", pki.caCertificatePEM)

            let process = Process()
            process.executableURL = fedbroker
            process.arguments = [
                "serve", "--listen", "127.0.0.1:0", "--tls-cert", certPath, "--tls-key", keyPath, "--client-ca", clientCA,
                "--data-dir", dir.path, "--log-level", "warning",
            ]
            // Only the scenario's settings: a FEDBROKER_* variable of the shell (a database URL,
            // say) must not point the broker at another store or Azure.
            var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("FEDBROKER_") }
            for (name, value) in scenario.environment(endpoints: endpoints, caBundlePath: emulatorCA) { environment[name] = value }
            process.environment = environment
            let stdout = Pipe()
            process.standardOutput = stdout
            note("cold start: starting fedbroker serve …")
            let started = DispatchTime.now().uptimeNanoseconds
            try process.run()
            defer { if process.isRunning { process.terminate() } }

            // The first line says where it listens.
            let text = await Self.firstLine(of: stdout.fileHandleForReading)
            let listening = DispatchTime.now().uptimeNanoseconds
            guard let address = text.split(separator: " ").first(where: { $0.contains(":") }), let port = Int(address.split(separator: ":").last ?? "") else {
                throw BenchError("serve printed '\(text)', not its address")
            }
            var configuration = FedBrokerClient.Configuration(host: "127.0.0.1", port: port, tls: try pki.clientTLS(commonName: BenchWorld.callerName), serverHostname: "localhost")
            configuration.connections = 1
            let client = FedBrokerClient(configuration: configuration)
            let (plaintext, blob, _) = try await client.generateDataKey(tenant: "customer-1", deadline: Date().addingTimeInterval(30))
            let firstServed = DispatchTime.now().uptimeNanoseconds
            guard try await client.unwrap(blob, deadline: Date().addingTimeInterval(30)) == plaintext else {
                throw BenchError("the first unwrap returned another key")
            }
            let memory = Self.memory(of: process.processIdentifier)
            await client.close()

            process.terminate()  // SIGTERM: graceful drain
            process.waitUntilExit()
            return .init(
                tenants: registered, slots: slots, secondsToListen: Double(listening - started) / 1e9,
                secondsToFirstKeyOperation: Double(firstServed - started) / 1e9,
                residentMegabytes: memory.resident, peakResidentMegabytes: memory.peak, exitStatus: Int(process.terminationStatus))
        }
    }

    /// The first line a child writes, read off the cooperative pool (the read blocks).
    static func firstLine(of handle: FileHandle) async -> String {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                var line: [UInt8] = []
                while let byte = try? handle.read(upToCount: 1), let first = byte.first, first != UInt8(ascii: "\n") { line.append(first) }
                continuation.resume(returning: String(decoding: line, as: UTF8.self))
            }
        }
    }

    /// VmRSS and VmHWM of a process, in MiB (Linux /proc).
    static func memory(of pid: Int32) -> (resident: Double, peak: Double) {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return (0, 0) }
        func field(_ name: String) -> Double {
            guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix(name + ":") }),
                let kilobytes = line.split(separator: " ").compactMap({ Double($0) }).first
            else { return 0 }
            return kilobytes / 1024
        }
        return (field("VmRSS"), field("VmHWM"))
    }
}
