/// Text from outside (a service's message, an error's description) made safe to show an operator:
/// at most `limit` characters, control characters (C0, DEL, C1, line and paragraph separators)
/// written out as `\u{…}`, so it can neither forge log lines nor grow without bound.
public enum BoundedText {
    /// At most `limit` characters of `text`, control characters (C0, DEL, C1, line and paragraph
    /// separators) written as `\u{…}`; a cut is marked with `…`.
    public static func escaped(_ text: String, limit: Int = 256) -> String {
        let pieces = text.unicodeScalars.map { scalar -> String in
            switch scalar.value {
            case 0x00...0x1F, 0x7F...0x9F, 0x2028, 0x2029: "\\u{\(String(scalar.value, radix: 16))}"
            default: String(scalar)
            }
        }
        guard pieces.reduce(0, { $0 + $1.unicodeScalars.count }) > limit else { return pieces.joined() }
        var out = ""
        var count = 0
        for piece in pieces {
            guard count + piece.unicodeScalars.count <= limit - 1 else { break }
            out += piece
            count += piece.unicodeScalars.count
        }
        return out + "…"
    }
}
