/// Text from outside (a service's message, an error's description, a caller's identity, an
/// unknown tenant's name) made safe to show an operator or to store: bounded, control characters
/// (C0, DEL, C1, line and paragraph separators) written out as `\u{…}`, so it can neither forge
/// log lines nor grow without bound.
///
/// Why the work stops at the bound: the input may be a megabyte a caller sent before any
/// authorization; escaping and measuring it all would spend time and memory in proportion to what
/// an attacker chose, only to throw nearly all of it away.
public enum BoundedText {
    /// At most `limit` Unicode scalars of `text`, control characters written as `\u{…}`; a cut is
    /// marked with `…` (counted in the limit).
    public static func escaped(_ text: String, limit: Int = 256) -> String {
        bounded(text, limit: limit, ellipsisSize: 1) { $0.unicodeScalars.count }
    }

    /// At most `maximumBytes` bytes of UTF-8, control characters written as `\u{…}`; a cut is
    /// marked with `…` (its 3 bytes counted in the bound) and never splits a scalar or an escape.
    /// What is stored (audit records) is bounded in bytes, because bytes are what it costs.
    public static func escaped(_ text: String, maximumBytes: Int) -> String {
        bounded(text, limit: maximumBytes, ellipsisSize: 3) { $0.utf8.count }
    }

    /// Whether `escaped` would change `text` at all; the common case on the request path.
    static func isClean(_ text: String, limit: Int, size: (Substring) -> Int) -> Bool {
        var seen = 0
        for scalar in text.unicodeScalars {
            if isControl(scalar) { return false }
            seen += 1
            // Cheap early exit: no scalar is smaller than one unit of either measure.
            if seen > limit { return false }
        }
        return size(Substring(text)) <= limit
    }

    private static func bounded(_ text: String, limit: Int, ellipsisSize: Int, size: (Substring) -> Int) -> String {
        guard limit > 0 else { return "" }
        if isClean(text, limit: limit, size: size) { return text }
        // Escaped pieces are appended while they fit; `cut` remembers where the text must end if
        // a marker has to follow, so the marker never pushes the result past the bound.
        var out = ""
        var used = 0
        var cut: Int?  // UTF-8 length of `out` where a marker would go
        for scalar in text.unicodeScalars {
            let piece = isControl(scalar) ? "\\u{\(String(scalar.value, radix: 16))}" : String(scalar)
            let pieceSize = size(Substring(piece))
            if cut == nil, used + pieceSize > limit - ellipsisSize { cut = out.utf8.count }
            guard used + pieceSize <= limit else {
                let kept = String(decoding: out.utf8.prefix(cut ?? 0), as: UTF8.self)
                return kept + (ellipsisSize <= limit ? "…" : "")
            }
            out += piece
            used += pieceSize
        }
        return out
    }

    private static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x00...0x1F, 0x7F...0x9F, 0x2028, 0x2029: true
        default: false
        }
    }
}
