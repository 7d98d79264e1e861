import Foundation

/// The executables the tests drive as child processes: `fedbroker` (the production binary;
/// `FEDBROKER_BINARY` overrides) and `fedbroker-dev` (the developer one; `FEDBROKER_DEV_BINARY`),
/// as the debug build `swift build --build-tests` leaves them in `.build/debug`.
public enum FedBrokerBinary {
    public static func url() throws -> URL { try url(named: "fedbroker", override: "FEDBROKER_BINARY") }

    /// `fedbroker-dev`: the emulator, the demo, the bench and the hidden test helpers.
    public static func devURL() throws -> URL { try url(named: "fedbroker-dev", override: "FEDBROKER_DEV_BINARY") }

    private static func url(named name: String, override: String) throws -> URL {
        if let path = ProcessInfo.processInfo.environment[override] { return URL(fileURLWithPath: path) }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let url = root.appendingPathComponent(".build/debug/\(name)")
        guard FileManager.default.isExecutableFile(atPath: url.path) else {
            throw FixtureError("no \(name) binary at \(url.path): run `swift build --build-tests` first")
        }
        return url
    }
}
