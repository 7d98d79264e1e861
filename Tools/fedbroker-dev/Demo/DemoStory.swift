import AsyncHTTPClient
import AzureEmulator
import BrokerClient
import BrokerWire
import FedBrokerTestSupport
import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL
import UnixSignals

/// The demo's five steps and its summary. Each step checks what it claims and throws
/// `DemoFailure` when it did not happen.
struct DemoStory {
    /// Files the demo writes into its work directory (private keys mode 0600).
    struct Files {
        var ca, brokerCert, brokerKey, serviceCert, serviceKey, emulatorCA, config, env, dataDirectory: URL

        init(_ work: URL) {
            ca = work.appendingPathComponent("ca.pem")
            brokerCert = work.appendingPathComponent("broker.pem")
            brokerKey = work.appendingPathComponent("broker-key.pem")
            serviceCert = work.appendingPathComponent("service.pem")
            serviceKey = work.appendingPathComponent("service-key.pem")
            emulatorCA = work.appendingPathComponent("emulator-ca.pem")
            config = work.appendingPathComponent("broker.json")
            env = work.appendingPathComponent("env.sh")
            dataDirectory = work.appendingPathComponent("broker", isDirectory: true)
        }
    }

    /// The bound the demo runs with, and the documented default (docs/configuration.md).
    static let keyStateMaxAgeSeconds = 2.0
    static let serviceName = "demo-service"

    let binary: URL
    let work: URL
    let files: Files
    let endpoints: EmulatorState.Endpoints
    let scenario: DemoScenario
    let control: DemoControlAPI
    let pki: LocalPKI
    let serviceLeaf: LocalPKI.Leaf
    let started = ContinuousClock.now
    let stats = DemoStats()

    init(
        binary: URL, work: URL, endpoints: EmulatorState.Endpoints, emulatorCAPEM: String, scenario: DemoScenario,
        control: DemoControlAPI
    ) throws {
        self.binary = binary
        self.work = work
        self.files = Files(work)
        self.endpoints = endpoints
        self.scenario = scenario
        self.control = control
        self.pki = try LocalPKI(name: "fedbroker demo CA")
        self.serviceLeaf = try pki.issue(Self.serviceName, server: false)
        let server = try pki.issue("localhost", server: true)
        try Self.write(try pki.caCertificatePEM, to: files.ca)
        try Self.write(try server.certificatePEM, to: files.brokerCert)
        try Self.write(server.privateKeyPEM, to: files.brokerKey, private: true)
        try Self.write(try serviceLeaf.certificatePEM, to: files.serviceCert)
        try Self.write(serviceLeaf.privateKeyPEM, to: files.serviceKey, private: true)
        try Self.write(emulatorCAPEM, to: files.emulatorCA)
        try Self.write(try brokerConfiguration(), to: files.config)
    }

    /// `fedbroker serve --config`: the same file format a deployment's ConfigMap holds.
    func brokerConfiguration() throws -> String {
        let document: [String: Any] = [
            "server": [
                "listen": "127.0.0.1:0", "tlsCert": files.brokerCert.path, "tlsKey": files.brokerKey.path, "clientCA": files.ca.path,
                "drainSeconds": 5,
            ],
            "store": ["dataDir": files.dataDirectory.path],
            "admin": ["staffTenantID": scenario.isvTenantID, "listen": "127.0.0.1:0"],
            "azure": [
                "imdsURL": endpoints.imds, "authorityURL": endpoints.authority, "graphURL": endpoints.graph,
                "appClientID": scenario.appClientID, "caBundle": files.emulatorCA.path, "vaultHostSuffixes": "localhost",
                "isvTenantID": scenario.isvTenantID,
            ],
            "slots": [
                "bootstrap": "\(scenario.bootstrapIdentity.clientId):\(scenario.bootstrapIdentity.principalId)",
                "applicationObjectID": scenario.appObjectID,
                // Retire waits this long after a slot empties (90 min in production): the demo's tokens are its own.
                "maxTokenLifetimeSeconds": 1, "propagationSeconds": 60,
            ],
            "vault": ["keyStateMaxAgeSeconds": Self.keyStateMaxAgeSeconds],
            "log": ["level": "notice"],
        ]
        return String(decoding: try JSONSerialization.data(withJSONObject: document, options: [.prettyPrinted, .sortedKeys]), as: UTF8.self)
    }

    /// The environment of every child: this process's, without anything that would point the
    /// broker or the CLI somewhere else (a sourced env.sh of an earlier run, workload identity).
    static func cleanEnvironment() -> [String: String] {
        ProcessInfo.processInfo.environment.filter { key, _ in
            !key.hasPrefix("FEDBROKER_") && !key.hasPrefix("AZURE_")
        }
    }

    // MARK: - The story

    func play(adminHTTP: HTTPClient, keepRunning: Bool) async throws {
        DemoOutput.line("fedbroker demo: the emulator plays Azure, the broker is the production binary (\(binary.path)).")
        DemoOutput.line("Work directory: \(work.path)")
        DemoOutput.line("  emulator   IMDS \(endpoints.imds), Entra \(endpoints.authority), Graph \(endpoints.graph)")
        for customer in scenario.customers { DemoOutput.line("             \(customer.displayName)'s vault \(customer.vaultURL)") }
        DemoOutput.line("  certificates  CA, broker (localhost), internal service (\(LocalPKI.callerIdentity(Self.serviceName)))")
        let broker = try await ServeProcess.start(
            config: files.config, name: "broker", directory: work, executable: binary, environment: Self.cleanEnvironment())
        DemoOutput.line("  $ fedbroker serve --config \(files.config.path)")
        DemoOutput.line("    framed listener 127.0.0.1:\(broker.framedPort) (mTLS), admin API https://localhost:\(broker.adminPort), log \(broker.logURL.path)")
        do {
            let token = try await control.staffToken(
                userObjectID: scenario.staffUserObjectIDs["admin"] ?? "", resource: scenario.adminAudience)
            var environment = Self.cleanEnvironment()
            environment["FEDBROKER_ADMIN_URL"] = "https://localhost:\(broker.adminPort)"
            environment["FEDBROKER_ADMIN_CA_BUNDLE"] = files.ca.path
            environment["FEDBROKER_ADMIN_TOKEN"] = token
            let shell = DemoShell(executable: binary, environment: environment)
            let client = FedBrokerClient(
                configuration: .init(
                    host: "127.0.0.1", port: broker.framedPort, tls: try pki.clientTLS(presenting: serviceLeaf), serverHostname: "localhost"))
            do {
                try await addSlots(shell)
                let tenants = try await onboard(shell)
                let blobs = try await serveTraffic(client, tenants: tenants)
                try await disableKey(client, tenants: tenants, earlierBlob: blobs[1])
                try await rotate(shell, client: client, tenants: tenants)
                try await summarize(shell, adminHTTP: adminHTTP, adminPort: broker.adminPort, tenants: tenants)
            } catch {
                await client.close()
                throw error
            }
            // Closed before the broker is stopped, so its drain has no connection to wait for.
            await client.close()
            if keepRunning {
                try await stayUp(broker: broker)
            }
        } catch {
            broker.killHard()
            throw error
        }
        let status = broker.stop()
        guard status == 0 else { throw DemoFailure("fedbroker serve exited \(status) on SIGTERM instead of draining cleanly (log: \(broker.logURL.path))") }
        DemoOutput.line("fedbroker serve drained and exited 0. Every step did what it said.")
    }

    private func step(_ number: Int, _ title: String) {
        DemoOutput.line("")
        DemoOutput.line("── \(number)/5  \(title)")
    }

    private func ok(_ text: String) { DemoOutput.line("  ✓ \(text)") }

    private func expect(_ result: DemoShell.Result, status: Int32, _ what: String) throws {
        guard result.status == status else {
            throw DemoFailure("\(what): the CLI exited \(result.status), expected \(status)")
        }
    }

    /// Step 1: the bootstrap slot exists; an SRE adds two more through Graph, as resumable jobs.
    private func addSlots(_ shell: DemoShell) async throws {
        step(1, "An SRE adds two FIC slots (fic-1 was bootstrapped: the one FIC made out of band)")
        for identity in scenario.spareIdentities.prefix(2) {
            try expect(
                try await shell.run(["slot", "add", "--identity", identity.clientId, "--principal-id", identity.principalId]), status: 0,
                "slot add")
        }
        _ = try await shell.run(["slot", "list"])
        let active = try await slots(shell).filter { $0["state"] as? String == "active" }.count
        guard active == 3 else { throw DemoFailure("expected 3 active slots after two slot adds, found \(active)") }
        ok("3 slots active: fic-1 and the two FICs the jobs created through Graph")
    }

    private func slots(_ shell: DemoShell) async throws -> [[String: Any]] {
        let document = try await shell.json(["slot", "list"])
        if let list = document as? [[String: Any]] { return list }
        if let object = document as? [String: Any] {
            for key in ["items", "slots"] { if let list = object[key] as? [[String: Any]] { return list } }
        }
        throw DemoFailure("`fedbroker slot list --json` printed no list of slots")
    }

    /// Step 2: register, validate until the customer's admin has done their part, activate; then
    /// the internal service becomes a caller with grants on both tenants.
    private func onboard(_ shell: DemoShell) async throws -> [String] {
        step(2, "Onboarding registers two customers; validation fails until each customer's admin has acted")
        var tenants: [String] = []
        for (index, customer) in scenario.customers.enumerated() {
            let register = [
                "tenant", "register", "--name", customer.displayName, "--geo", "europe", "--entra-tenant", customer.tenantID,
                "--vault-uri", customer.vaultURL, "--key", customer.keyName, "--idempotency-key", "demo-\(customer.displayName.lowercased())",
            ]
            try expect(try await shell.run(register), status: 0, "tenant register")
            // The same request again, for its JSON: the idempotency key returns the same tenant.
            guard let registered = try await shell.json(register) as? [String: Any], let id = registered["id"] as? String,
                let binding = registered["binding"] as? [String: Any], let tagName = binding["tag_name"] as? String,
                let tagValue = binding["tag_value"] as? String
            else { throw DemoFailure("tenant register --json: no id or binding in the answer") }
            try expect(try await shell.run(["tenant", "validate", id]), status: 1, "validate before the customer consented")
            DemoOutput.line("  \(customer.displayName)'s admin consents to the ISV's application (the consent URL above)")
            let servicePrincipal = try await control.consent(tenantID: customer.tenantID, appID: scenario.appClientID)
            if index == 0 {
                try expect(try await shell.run(["tenant", "validate", id]), status: 1, "validate before the role and the tag")
            }
            DemoOutput.line("  \(customer.displayName)'s admin grants Key Vault Crypto Service Encryption User on the key and sets \(tagName)=\(tagValue)")
            try await control.grantRole(vault: customer.vaultName, key: customer.keyName, principalID: servicePrincipal)
            try await control.tagKey(vault: customer.vaultName, key: customer.keyName, tags: [tagName: tagValue])
            try expect(try await shell.run(["tenant", "validate", id]), status: 0, "validate once the customer is done")
            try expect(try await shell.run(["tenant", "activate", id, "--yes"]), status: 0, "tenant activate")
            tenants.append(id)
            ok("\(customer.displayName) is \(id), active")
        }
        let identity = LocalPKI.callerIdentity(Self.serviceName)
        try expect(
            try await shell.run([
                "caller", "add", Self.serviceName, "--identity", identity, "--grant",
                "generate_data_key,wrap,unwrap,rewrap,key_status:\(tenants.joined(separator: ","))",
            ]), status: 0, "caller add")
        ok("the internal service (\(identity)) may call both tenants")
        return tenants
    }

    /// Step 3: data keys for both customers, each unwrapped again.
    private func serveTraffic(_ client: FedBrokerClient, tenants: [String]) async throws -> [[UInt8]] {
        step(3, "An internal service generates and unwraps data keys for both customers (client library, mTLS)")
        let traffic = DemoTraffic(client: client, tenants: tenants, stats: stats)
        var blobs: [[UInt8]] = []
        for tenant in tenants {
            let generated: (plaintext: [UInt8], blob: [UInt8], keyID: String)
            do {
                generated = try await client.generateDataKey(tenant: tenant, deadline: Date().addingTimeInterval(10))
            } catch {
                throw DemoFailure("GenerateDataKey for \(tenant): \(DemoStats.describe(error))")
            }
            blobs.append(generated.blob)
            do {
                for _ in 0..<20 { try await traffic.roundTrip(tenant) }
            } catch {
                throw DemoFailure("a round trip for \(tenant) failed: \(DemoStats.describe(error))")
            }
            ok("\(tenant): 21 data keys generated under \(generated.keyID), 40 Unwraps matched them (blob \(generated.blob.count) bytes)")
        }
        return blobs
    }

    /// Step 4: customer 2 disables the key; new data keys are refused within the bound, existing
    /// blobs are the vault's business; enabling it brings service back.
    private func disableKey(_ client: FedBrokerClient, tenants: [String], earlierBlob: [UInt8]) async throws {
        let customer = scenario.customers[1]
        let tenant = tenants[1]
        step(4, "\(customer.displayName) disables their key; the broker refuses new data keys within its bound, then serves again")
        DemoOutput.line("  \(customer.displayName)'s admin disables \(customer.keyName) in \(customer.vaultName)")
        try await control.setKeyEnabled(vault: customer.vaultName, key: customer.keyName, false)
        let bound = Self.keyStateMaxAgeSeconds
        let refusedAfter = try await until(seconds: bound + 5, "GenerateDataKey refused with KEY_DISABLED") {
            do {
                _ = try await client.generateDataKey(tenant: tenant, deadline: Date().addingTimeInterval(10))
                return false
            } catch BrokerCallError.status(let status) where status.reason == .keyDisabled {
                return true
            }
        }
        ok(String(format: "GenerateDataKey refused with KEY_DISABLED %.1f s after the key was disabled (bound: vault.keyStateMaxAgeSeconds, %.0f s here, 60 s by default)", refusedAfter, bound))
        do {
            _ = try await client.wrap(tenant: tenant, plaintext: [UInt8](repeating: 7, count: 32), deadline: Date().addingTimeInterval(10))
            throw DemoFailure("Wrap under a disabled key was answered")
        } catch BrokerCallError.status(let status) where status.reason == .keyDisabled {
            ok("Wrap refused the same way: no blob is made that nobody could unwrap")
        }
        do {
            try await DemoTraffic(client: client, tenants: [tenants[0]], stats: stats).roundTrip(tenants[0])
        } catch {
            throw DemoFailure("\(scenario.customers[0].displayName) was affected by another customer's key: \(DemoStats.describe(error))")
        }
        ok("\(scenario.customers[0].displayName) is served as before")
        DemoOutput.line("  \(customer.displayName)'s admin enables the key again")
        try await control.setKeyEnabled(vault: customer.vaultName, key: customer.keyName, true)
        let backAfter = try await until(seconds: bound + 5, "GenerateDataKey served again") {
            do {
                _ = try await client.generateDataKey(tenant: tenant, deadline: Date().addingTimeInterval(10))
                return true
            } catch BrokerCallError.status(let status) where status.reason == .keyDisabled {
                return false
            }
        }
        let plaintext = try await client.unwrap(earlierBlob, deadline: Date().addingTimeInterval(10))
        guard plaintext.count == 32 else { throw DemoFailure("the blob from step 3 unwrapped to \(plaintext.count) bytes") }
        ok(String(format: "served again %.1f s after the key was enabled; the blob from step 3 still unwraps", backAfter))
    }

    /// Calls `attempt` every 200 ms until it answers true; answers the seconds it took.
    private func until(seconds: Double, _ what: String, _ attempt: () async throws -> Bool) async throws -> Double {
        let start = ContinuousClock.now
        let limit = start + .milliseconds(Int64(seconds * 1000))
        while ContinuousClock.now < limit {
            if try await attempt() { return (ContinuousClock.now - start) / .seconds(1) }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw DemoFailure("\(what): not within \(seconds) s")
    }

    /// Step 5: rotate the slot customer 1 is on while four workers keep calling; none may fail.
    private func rotate(_ shell: DemoShell, client: FedBrokerClient, tenants: [String]) async throws {
        step(5, "An SRE rotates slot fic-1 to a new managed identity while traffic runs")
        guard let before = try await shell.json(["tenant", "show", tenants[0]]) as? [String: Any], let oldSlot = before["slot_id"] as? String
        else { throw DemoFailure("tenant show --json: no slot_id") }
        guard oldSlot == "fic-1" else { throw DemoFailure("\(tenants[0]) is on \(oldSlot), expected fic-1 (ties go to the smallest slot id)") }
        let rotationStats = DemoStats()
        let traffic = DemoTraffic(client: client, tenants: tenants, stats: rotationStats)
        let stop = DemoStopFlag()
        let running = Task { await traffic.run(workers: 4, stop: stop) }
        _ = try await until(seconds: 10, "traffic started") { rotationStats.operations >= 20 }
        DemoOutput.line("  traffic: 4 workers, each a GenerateDataKey then two Unwraps of its blob, on both tenants")
        let identity = scenario.spareIdentities[2]
        let result = try await shell.run(["slot", "rotate", "fic-1", "--to-identity", identity.clientId, "--principal-id", identity.principalId])
        // A little traffic after the job, through the new slot.
        let afterJob = rotationStats.operations
        _ = try? await until(seconds: 10, "traffic after the rotation") { rotationStats.operations >= afterJob + 20 }
        stop.set()
        await running.value
        stats.absorb(rotationStats)
        try expect(result, status: 0, "slot rotate")
        let (failures, first) = rotationStats.failures
        guard failures == 0 else { throw DemoFailure("\(failures) request(s) failed during the rotation: \(first.joined(separator: "; "))") }
        guard let after = try await shell.json(["tenant", "show", tenants[0]]) as? [String: Any], let newSlot = after["slot_id"] as? String,
            newSlot != oldSlot
        else { throw DemoFailure("\(tenants[0]) did not move off fic-1") }
        let retired = try await slots(shell).contains { $0["id"] as? String == "fic-1" && $0["state"] as? String == "retired" }
        guard retired else { throw DemoFailure("fic-1 is not retired after the rotation") }
        ok("\(rotationStats.operations) requests during the rotation, 0 failed; \(tenants[0]) moved fic-1 → \(newSlot); fic-1 retired and its FIC deleted")
    }

    /// The summary: what the internal service saw, what the broker counted, where the audit is.
    private func summarize(_ shell: DemoShell, adminHTTP: HTTPClient, adminPort: Int, tenants: [String]) async throws {
        DemoOutput.line("")
        DemoOutput.line("── Summary")
        for line in stats.summary {
            DemoOutput.line(
                "  " + line.operation.padding(toLength: 16, withPad: " ", startingAt: 0)
                    + String(
                        format: "%6d calls  p50 %7.2f ms  p99 %7.2f ms", line.latency.operations, line.latency.p50Microseconds / 1000,
                        line.latency.p99Microseconds / 1000))
        }
        let response = try await adminHTTP.execute(HTTPClientRequest(url: "https://localhost:\(adminPort)/metrics"), timeout: .seconds(10))
        let body = String(buffer: try await response.body.collect(upTo: 8 << 20))
        guard response.status.code == 200, let metrics = try? PrometheusText(parsing: body) else {
            throw DemoFailure("GET /metrics answered \(response.status.code)")
        }
        let hits = metrics.sum("fedbroker_cache_hits_total"), misses = metrics.sum("fedbroker_cache_misses_total")
        let hitRate = hits + misses > 0 ? hits / (hits + misses) * 100 : 0
        DemoOutput.line(String(format: "  data-key cache  %.0f hits, %.0f misses: %.1f %% of Unwraps served from memory", hits, misses, hitRate))
        let vault = ["wrapkey", "unwrapkey", "get"].map { operation in
            (operation, metrics.sum("fedbroker_vault_requests_total", ["operation": operation]))
        }
        let vaultTotal = metrics.sum("fedbroker_vault_requests_total")
        DemoOutput.line(
            "  vault calls     \(Int(vaultTotal)) in all" + vault.filter { $0.1 > 0 }.map { ", \($0.0) \(Int($0.1))" }.joined())
        DemoOutput.line("  token exchanges \(Int(metrics.sum("fedbroker_token_exchanges_total"))) (Entra, through the FIC slots)")
        let elapsed = ContinuousClock.now - started
        DemoOutput.line("  elapsed         \(elapsed.components.seconds) s")
        DemoOutput.line("  audit trail     the store \(files.dataDirectory.appendingPathComponent("broker.db").path) (SQLite; its journal in \(files.dataDirectory.appendingPathComponent("audit-journal").path)); for example:")
        _ = try await shell.run(["audit", "query", "--tenant", tenants[1], "--limit", "5"])
    }

    /// `--keep-running`: the environment for exploring, then wait for Ctrl-C.
    private func stayUp(broker: ServeProcess) async throws {
        let lines = [
            "# fedbroker demo: source this file, then use the CLI (fedbroker tenant list, slot list, audit query, client health …).",
            "export PATH=\"\(binary.deletingLastPathComponent().path):$PATH\"",
            "export FEDBROKER_ADMIN_URL=https://localhost:\(broker.adminPort)",
            "export FEDBROKER_ADMIN_CA_BUNDLE=\(files.ca.path)",
            "# A fresh staff token (the emulator's sign-in); kept in the environment, never in a file.",
            "export FEDBROKER_ADMIN_TOKEN=$(curl -s -X POST \(endpoints.control)/control/users/\(scenario.staffUserObjectIDs["admin"] ?? "")/token -H 'Content-Type: application/json' -d '{\"resource\":\"\(scenario.adminAudience)\"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])')",
            "export FEDBROKER_EMU_CONTROL_URL=\(endpoints.control)",
            "# The internal service's view: fedbroker client health $FEDBROKER_DEMO_CLIENT",
            "export FEDBROKER_DEMO_CLIENT=\"--connect 127.0.0.1:\(broker.framedPort) --server-name localhost --tls-cert \(files.serviceCert.path) --tls-key \(files.serviceKey.path) --ca \(files.ca.path)\"",
        ]
        try Self.write(lines.joined(separator: "\n") + "\n", to: files.env)
        DemoOutput.line("")
        DemoOutput.line("Still running (--keep-running). In another shell:  . \(files.env.path)")
        DemoOutput.line("Ctrl-C stops the broker and the emulator.")
        let signals = await UnixSignalsSequence(trapping: .sigint, .sigterm)
        for await _ in signals { break }
    }

    static func write(_ text: String, to url: URL, private isPrivate: Bool = false) throws {
        guard FileManager.default.createFile(atPath: url.path, contents: Data(text.utf8), attributes: [.posixPermissions: isPrivate ? 0o600 : 0o644])
        else { throw DemoFailure("cannot write \(url.path)") }
    }
}
