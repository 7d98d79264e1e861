import Foundation

/// The `fedbroker` executable the tests drive as a child process: `FEDBROKER_BINARY`, or the
/// debug build `swift build --build-tests` leaves in `.build/debug`.
public enum FedBrokerBinary {
    public static func url() throws -> URL {
        if let override = ProcessInfo.processInfo.environment["FEDBROKER_BINARY"] { return URL(fileURLWithPath: override) }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let url = root.appendingPathComponent(".build/debug/fedbroker")
        guard FileManager.default.isExecutableFile(atPath: url.path) else {
            throw FixtureError("no fedbroker binary at \(url.path): run `swift build --build-tests` first")
        }
        return url
    }
}
