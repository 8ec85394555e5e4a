/// Text that may come from outside (a command's value, a device's error echoing it) cut to a bounded length before
/// it is logged or audited, so one oversized value cannot make a 50 MB journal line or audit row (issue 15, Medium 6).
public enum BoundedText {
    /// What a value keeps in the audit trail and the journal.
    public static let valueBytes = 256
    /// What a reason or a whole log field keeps: longer, since it carries a device's or a parser's explanation.
    public static let detailBytes = 1024

    /// `text` if it has at most `maxBytes` UTF-8 bytes; otherwise its first characters that fit, then
    /// "… (N bytes)" with the full size, so the reader knows it was cut and by how much.
    public static func truncated(_ text: String, maxBytes: Int = valueBytes) -> String {
        let total = text.utf8.count
        guard total > maxBytes else { return text }
        let scalars = text.unicodeScalars
        var kept = 0
        var end = scalars.startIndex
        // Whole scalars only, so the cut never splits a UTF-8 sequence; stops at the bound, whatever the size.
        while end < scalars.endIndex {
            let width = UTF8.width(scalars[end])
            if kept + width > maxBytes { break }
            kept += width
            end = scalars.index(after: end)
        }
        return String(scalars[scalars.startIndex..<end]) + "… (\(total) bytes)"
    }
}
