import Foundation

/// A scrape in the Prometheus text format (0.0.4), parsed: samples with their labels and values,
/// and each family's declared type. Strict enough for tests: a line it cannot read is an error,
/// not skipped.
public struct PrometheusText: Sendable {
    public struct Sample: Sendable, Equatable {
        public var name: String
        public var labels: [String: String]
        public var value: Double
    }

    public struct ParseError: Error, CustomStringConvertible {
        public var line: String
        public var description: String { "not a Prometheus text line: \(line)" }
    }

    public var samples: [Sample] = []
    /// `# TYPE name counter|gauge|histogram|…`, by family name.
    public var types: [String: String] = [:]

    public init(parsing text: String) throws {
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
            if line.hasPrefix("#") {
                let parts = line.split(separator: " ", omittingEmptySubsequences: true)
                if parts.count >= 4, parts[1] == "TYPE" { types[String(parts[2])] = String(parts[3]) }
                continue
            }
            guard let sample = Self.sample(Substring(line)) else { throw ParseError(line: String(line)) }
            samples.append(sample)
        }
    }

    /// The samples of `name` whose labels include `labels`.
    public func matching(_ name: String, _ labels: [String: String] = [:]) -> [Sample] {
        samples.filter { sample in sample.name == name && labels.allSatisfy { sample.labels[$0.key] == $0.value } }
    }

    /// The one sample of `name` with exactly these labels (nil when absent).
    public func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
        samples.first { $0.name == name && $0.labels == labels }?.value
    }

    /// The sum over the samples of `name` whose labels include `labels` (0 when none).
    public func sum(_ name: String, _ labels: [String: String] = [:]) -> Double {
        matching(name, labels).reduce(0) { $0 + $1.value }
    }

    /// `name{labels} value [timestamp]`, label values with `\\`, `\"` and `\n` escapes.
    static func sample(_ line: Substring) -> Sample? {
        var index = line.startIndex
        func isNameCharacter(_ c: Character) -> Bool { c.isLetter || c.isNumber || c == "_" || c == ":" }
        while index < line.endIndex, isNameCharacter(line[index]) { index = line.index(after: index) }
        let name = String(line[line.startIndex..<index])
        guard !name.isEmpty, let first = name.first, !first.isNumber else { return nil }
        var labels: [String: String] = [:]
        if index < line.endIndex, line[index] == "{" {
            index = line.index(after: index)
            while true {
                guard index < line.endIndex else { return nil }
                if line[index] == "}" {
                    index = line.index(after: index)
                    break
                }
                let keyStart = index
                while index < line.endIndex, isNameCharacter(line[index]) { index = line.index(after: index) }
                let key = String(line[keyStart..<index])
                guard !key.isEmpty, index < line.endIndex, line[index] == "=" else { return nil }
                index = line.index(after: index)
                guard index < line.endIndex, line[index] == "\"" else { return nil }
                index = line.index(after: index)
                var value = ""
                while true {
                    guard index < line.endIndex else { return nil }
                    let c = line[index]
                    index = line.index(after: index)
                    if c == "\"" { break }
                    if c == "\\" {
                        guard index < line.endIndex else { return nil }
                        let escaped = line[index]
                        index = line.index(after: index)
                        switch escaped {
                        case "n": value.append("\n")
                        case "\\", "\"": value.append(escaped)
                        default: return nil
                        }
                    } else {
                        value.append(c)
                    }
                }
                guard labels[key] == nil else { return nil }
                labels[key] = value
                if index < line.endIndex, line[index] == "," { index = line.index(after: index) }
            }
        }
        let rest = line[index...].split(separator: " ", omittingEmptySubsequences: true)
        guard (1...2).contains(rest.count) else { return nil }
        let value: Double?
        switch rest[0] {
        case "+Inf": value = .infinity
        case "-Inf": value = -.infinity
        case "NaN": value = .nan
        default: value = Double(rest[0])
        }
        guard let value else { return nil }
        return Sample(name: name, labels: labels, value: value)
    }
}
