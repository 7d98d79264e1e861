import Foundation

/// One line per step of a chain check, with the cause, who acts and what to do under a failed
/// one: how `probe` and `tenant validate` print, so staff read both the same way.
enum StepsText {
    struct Step {
        var name: String
        var ok: Bool
        var milliseconds: Double
        var detail: String
        var code: String?
        var responsible: String?
        var remedy: String?
    }

    static func render(_ steps: [Step]) -> [String] {
        var lines: [String] = []
        for step in steps {
            let mark = step.ok ? "ok  " : "FAIL"
            let time = step.milliseconds > 0 ? String(format: "%8.1f ms", step.milliseconds) : "           "
            lines.append("  \(mark) \(step.name.padding(toLength: 17, withPad: " ", startingAt: 0)) \(time)  \(step.detail)")
            if !step.ok {
                if let code = step.code { lines.append("       cause: \(code)" + (step.responsible.map { " (who acts: \($0))" } ?? "")) }
                if let remedy = step.remedy { lines.append("       to do: \(remedy)") }
            }
        }
        return lines
    }
}
