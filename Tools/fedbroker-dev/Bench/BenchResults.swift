import Foundation

/// Everything one `fedbroker-dev bench` run measured, as written to the JSON file.
struct BenchResults: Codable {
    struct Machine: Codable {
        var cores: Int
        var memoryGiB: Double
        var date: Date
        static var current: Machine {
            .init(cores: ProcessInfo.processInfo.activeProcessorCount, memoryGiB: Double(ProcessInfo.processInfo.physicalMemory) / 1_073_741_824, date: Date())
        }
    }

    /// A broker's turns from the start of each warm-up until the journal had shipped the turn's
    /// records: every answer over that time, and the machine's CPU over it. What broker and store
    /// keep up with together; a store whose inserts fall behind the answers shows here, not in
    /// the measured window's throughput.
    struct Sustained: Codable, Sendable {
        var answers = 0
        var seconds = 0.0
        /// The machine's busy CPU over the turns (`/proc/stat`), the store's shipping included; 0
        /// where it was not read.
        var machineCPUSeconds = 0.0

        var throughput: Double { seconds > 0 ? Double(answers) / seconds : 0 }
        var machineCPUMicrosecondsPerAnswer: Double? {
            microsecondsPerOperation(machineCPUSeconds > 0 ? machineCPUSeconds : nil, answers)
        }

        /// Times `turn`, which returns the answers it got once their records are shipped.
        static func measuring(_ turn: () async throws -> Int) async rethrows -> Sustained {
            let (start, machineBefore) = (DispatchTime.now().uptimeNanoseconds, machineBusySeconds())
            let answers = try await turn()
            return .init(answers: answers, seconds: secondsSince(start), machineCPUSeconds: machineBusySeconds(since: machineBefore))
        }

        static func + (a: Sustained, b: Sustained) -> Sustained {
            .init(answers: a.answers + b.answers, seconds: a.seconds + b.seconds, machineCPUSeconds: a.machineCPUSeconds + b.machineCPUSeconds)
        }
    }

    struct CachedPoint: Codable, Sendable {
        var concurrency: Int
        /// The broker on the run's store (SQLite, or PostgreSQL with `--database-url` alone).
        var broker: LatencySample
        var echo: LatencySample
        /// Seconds waited after the broker's windows for its journal to ship what they appended
        /// (not in any window).
        var shippingWaitSeconds: Double?
        var sustained: Sustained?
        /// With `--compare-stores`: the broker on PostgreSQL, measured in the same rounds.
        var postgres: LatencySample?
        var postgresShippingWaitSeconds: Double?
        var postgresSustained: Sustained?

        /// Broker throughput as a fraction of the echo's: the cost of broker logic (target ≥ 0.6).
        var ratio: Double { Self.ratio(broker.throughput, echo.throughput) }
        var postgresRatio: Double? { postgres.map { Self.ratio($0.throughput, echo.throughput) } }
        /// The PostgreSQL broker's throughput as a fraction of the SQLite one's (target ≥ 0.9).
        var postgresToSQLite: Double? { postgres.map { Self.ratio($0.throughput, broker.throughput) } }
        /// The same over the sustained spans (shipping included).
        var sustainedPostgresToSQLite: Double? {
            guard let postgresSustained, let sustained else { return nil }
            return Self.ratio(postgresSustained.throughput, sustained.throughput)
        }

        private static func ratio(_ a: Double, _ b: Double) -> Double { b > 0 ? a / b : 0 }
    }

    struct UncachedResult: Codable {
        var broker: LatencySample
        var direct: LatencySample
        /// What the broker adds to a vault round trip at the median (target ≤ 500 µs).
        var addedP50Microseconds: Double { broker.p50Microseconds - direct.p50Microseconds }
    }

    struct ColdStartResult: Codable {
        var tenants: Int
        var slots: Int
        var secondsToListen: Double
        /// Process start to the first GenerateDataKey answered: IMDS, Entra and the vault included (target < 2 s).
        var secondsToFirstKeyOperation: Double
        var residentMegabytes: Double
        var peakResidentMegabytes: Double
        var exitStatus: Int
    }

    var machine: Machine
    var debugBuild = false
    /// Where the broker's store (and its audit trail) was: its fsync latency is in the figures.
    /// Where audit records became durable: `journal`, `journal-interval` (written before the
    /// answer, synced behind it) or `store`.
    var audit: String?
    /// `sqlite` or `postgres`.
    var store: String?
    var storeDirectory: String?
    var cached: [CachedPoint]?
    var uncached: UncachedResult?
    var coldStart: ColdStartResult?
    var hotPath: HotPath.Result?
    var auditInsert: AuditInsert.Result?
    var journalAppend: JournalAppend.Result?

    init(machine: Machine) { self.machine = machine }

    func table() -> String {
        func f(_ value: Double, _ digits: Int = 0) -> String { String(format: "%.\(digits)f", value) }
        var lines = ["fedbroker-dev bench — \(machine.cores) cores\(debugBuild ? " — DEBUG BUILD" : "")\(store.map { " — \($0) store" } ?? "")\(storeDirectory.map { " in \($0)" } ?? "")\(audit.map { " — audit durable in the \($0) before each answer" } ?? "")"]
        if let cached {
            lines.append("")
            lines.append("1. Cached Unwrap over mTLS vs echo baseline (same frames, same TLS, no broker logic)")
            lines.append("   CPU µs/op: this process's (client, brokers, emulator), then the machine's (a PostgreSQL server on it included)")
            lines.append("   conc   broker ops/s   echo ops/s   ratio   broker p50/p99/p99.9 µs    echo p50/p99/p99.9 µs   errors   CPU µs/op broker/echo   machine")
            func cpu(_ sample: LatencySample) -> String { f(sample.cpuMicrosecondsPerOperation ?? 0) }
            func machineCPU(_ sample: LatencySample) -> String { f(sample.machineCPUMicrosecondsPerOperation ?? 0) }
            for p in cached {
                lines.append(
                    "   \(pad(p.concurrency, 4))   \(pad(f(p.broker.throughput), 12))   \(pad(f(p.echo.throughput), 10))   \(pad(f(p.ratio, 2), 5))   "
                        + "\(pad("\(f(p.broker.p50Microseconds))/\(f(p.broker.p99Microseconds))/\(f(p.broker.p999Microseconds))", 23))   "
                        + "\(pad("\(f(p.echo.p50Microseconds))/\(f(p.echo.p99Microseconds))/\(f(p.echo.p999Microseconds))", 21))   \(pad(p.broker.errors + p.echo.errors, 6))   "
                        + "\(pad("\(cpu(p.broker))/\(cpu(p.echo))", 21))   \(machineCPU(p.broker))/\(machineCPU(p.echo))")
            }
            if cached.contains(where: { $0.postgres != nil }) {
                lines.append("   The same rounds, a broker on PostgreSQL taking its turn beside the one on SQLite above (same echo):")
                lines.append("   sustained: every answer from each warm-up's start until the journal had shipped them, over that time; machine CPU over the same")
                lines.append("   conc   PostgreSQL ops/s   ratio to echo   PostgreSQL/SQLite ops/s   sustained   shipping wait s PostgreSQL/SQLite   p50/p99/p99.9 µs          errors   sustained machine CPU µs/answer PostgreSQL/SQLite")
                for p in cached {
                    guard let pg = p.postgres, let toEcho = p.postgresRatio, let relative = p.postgresToSQLite else { continue }
                    lines.append(
                        "   \(pad(p.concurrency, 4))   \(pad(f(pg.throughput), 16))   \(pad(f(toEcho, 2), 13))   "
                            + "\(pad(f(relative, 2), 23))   \(pad(f(p.sustainedPostgresToSQLite ?? 0, 2), 9))   "
                            + "\(pad("\(f(p.postgresShippingWaitSeconds ?? 0, 2))/\(f(p.shippingWaitSeconds ?? 0, 2))", 33))   "
                            + "\(pad("\(f(pg.p50Microseconds))/\(f(pg.p99Microseconds))/\(f(pg.p999Microseconds))", 23))   \(pad(pg.errors, 6))   "
                            + "\(f(p.postgresSustained?.machineCPUMicrosecondsPerAnswer ?? 0))/\(f(p.sustained?.machineCPUMicrosecondsPerAnswer ?? 0))")
                }
            }
        }
        if let uncached {
            lines.append("")
            lines.append("2. Uncached Unwrap, one at a time: broker vs Key Vault client direct to the emulator (\(uncached.broker.operations) each)")
            lines.append("   broker p50 \(f(uncached.broker.p50Microseconds)) µs, p99 \(f(uncached.broker.p99Microseconds)) µs")
            lines.append("   direct p50 \(f(uncached.direct.p50Microseconds)) µs, p99 \(f(uncached.direct.p99Microseconds)) µs")
            lines.append("   added by the broker at p50: \(f(uncached.addedP50Microseconds)) µs (ratio \(f(uncached.broker.p50Microseconds / max(uncached.direct.p50Microseconds, 1), 2)))")
        }
        if let c = coldStart {
            lines.append("")
            lines.append("3. Cold start: \(c.tenants) tenants on \(c.slots) slots")
            lines.append("   listening after \(f(c.secondsToListen, 3)) s; first GenerateDataKey answered after \(f(c.secondsToFirstKeyOperation, 3)) s")
            lines.append("   resident memory \(f(c.residentMegabytes, 1)) MiB (peak \(f(c.peakResidentMegabytes, 1)) MiB); exit status after SIGTERM \(c.exitStatus)")
        }
        if let h = hotPath, h.iterations > 0 {
            lines.append("")
            lines.append("4. Hot path in process (cached Unwrap through the service, no socket): \(h.iterations) calls, one at a time")
            lines.append("   \(f(h.microsecondsPerCall ?? 0, 1)) µs per call; reference computation \(f(h.microsecondsPerReference ?? 0, 1)) µs; ratio \(f(h.ratioToReference ?? 0, 3)) (median of \(HotPath.rounds) rounds)")
        }
        if let a = auditInsert {
            lines.append("")
            lines.append("5. Audit insert into \(a.store): \(a.records) records in batches of \(a.batchSize), alternating")
            lines.append("   time-ordered ids \(f(a.timeOrderedPerSecond, 0))/s, random ids \(f(a.randomPerSecond, 0))/s: ratio \(f(a.ratio, 2)) (last tenth \(f(a.ratioAtEnd, 2)))")
        }
        if let j = journalAppend {
            lines.append("")
            lines.append("6. Audit journal append (write + fdatasync), \(j.appends) into each journal, alternating")
            lines.append("   one at a time, p50/p99 µs: preallocated \(f(j.preallocatedP50))/\(f(j.preallocatedP99)), grown \(f(j.grownP50))/\(f(j.grownP99)): p50 ratio \(f(j.ratioP50, 2))")
            lines.append("   16 at a time: preallocated \(f(j.preallocatedPerSecond))/s, grown \(f(j.grownPerSecond))/s: ratio \(f(j.ratioThroughput, 2))")
        }
        return lines.joined(separator: "\n")
    }

    private func pad(_ value: Any, _ width: Int) -> String {
        let text = "\(value)"
        return String(repeating: " ", count: max(0, width - text.count)) + text
    }
}

/// A benchmark that could not measure what it set out to (the setup or a check failed).
struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
