import Foundation

/// Removes secrets from configuration text before it leaves the box (`edgepilot diag bundle`).
///
/// The agent's own format keeps secrets in files (`password_file`, `key_file`) and the bundle never copies those;
/// this is the second line: whatever a hand-edited file holds inline, a value under a secret-sounding key, the
/// password of a URL's user part and a PEM private key block never reach the archive. Works on text, line by
/// line, so a file the loader would reject (the one a technician is asking about) is still redacted.
public enum SecretRedaction {
    public static let marker = "<redacted>"

    /// Keys whose value is a secret itself. Keys ending in `_file` name a path and stay.
    static let secretWords = ["password", "passwd", "passphrase", "secret", "token", "private_key", "api_key"]

    /// The text with every secret replaced by `<redacted>`, and how many were replaced.
    public static func redact(_ text: String) -> (text: String, redactions: Int) {
        var out: [Substring] = []
        var count = 0
        var inPrivateKey = false
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if inPrivateKey {
                if line.contains("-----END") && line.contains("PRIVATE KEY-----") { inPrivateKey = false }
                continue
            }
            if line.contains("-----BEGIN") && line.contains("PRIVATE KEY-----") {
                out.append(Substring(leadingSpace(of: line) + marker))
                count += 1
                inPrivateKey = !(line.contains("-----END"))
                continue
            }
            var redacted = redactSecretKey(line, count: &count)
            redacted = redactURLPasswords(redacted, count: &count)
            out.append(Substring(redacted))
        }
        return (out.joined(separator: "\n"), count)
    }

    /// True when `text` still holds something that looks like a private key: the last check before archiving.
    public static func containsPrivateKey(_ text: String) -> Bool {
        text.contains("PRIVATE KEY-----")
    }

    /// `  password: x` / `- token: "y"` / `{secret: z, …}` → the value replaced, the key kept.
    private static func redactSecretKey(_ line: Substring, count: inout Int) -> String {
        var result = String(line)
        for word in secretWords {
            var searchFrom = result.startIndex
            while let range = result.range(of: word, range: searchFrom..<result.endIndex) {
                searchFrom = range.upperBound
                // The key runs from the previous separator to the colon after the word.
                var keyEnd = range.upperBound
                while keyEnd < result.endIndex, isKeyCharacter(result[keyEnd]) { keyEnd = result.index(after: keyEnd) }
                let key = result[keyStart(in: result, before: range.lowerBound)..<keyEnd]
                guard keyEnd < result.endIndex, result[keyEnd] == ":", !key.hasSuffix("_file") else { continue }
                var valueStart = result.index(after: keyEnd)
                while valueStart < result.endIndex, result[valueStart] == " " {
                    valueStart = result.index(after: valueStart)
                }
                var valueEnd = valueStart
                while valueEnd < result.endIndex, !",}#".contains(result[valueEnd]) {
                    valueEnd = result.index(after: valueEnd)
                }
                let value = result[valueStart..<valueEnd].trimmingTrailingSpaces()
                guard !value.isEmpty, value != marker, value != "|", value != ">" else { continue }
                let end = result.index(valueStart, offsetBy: value.count)
                result.replaceSubrange(valueStart..<end, with: marker)
                count += 1
                searchFrom = result.index(valueStart, offsetBy: marker.count)
            }
        }
        return result
    }

    /// `scheme://user:password@host` → `scheme://user:<redacted>@host`.
    private static func redactURLPasswords(_ line: String, count: inout Int) -> String {
        var result = line
        var searchFrom = result.startIndex
        while let scheme = result.range(of: "://", range: searchFrom..<result.endIndex) {
            searchFrom = scheme.upperBound
            var end = scheme.upperBound
            while end < result.endIndex, !" \"'/,}".contains(result[end]) { end = result.index(after: end) }
            let authority = result[scheme.upperBound..<end]
            guard let at = authority.lastIndex(of: "@"), let colon = authority[..<at].firstIndex(of: ":") else {
                continue
            }
            let password = result.index(after: colon)..<at
            guard !result[password].isEmpty, result[password] != Substring(marker) else { continue }
            result.replaceSubrange(password, with: marker)
            count += 1
            searchFrom = result.startIndex
        }
        return result
    }

    private static func isKeyCharacter(_ c: Character) -> Bool { c.isLetter || c.isNumber || c == "_" || c == "-" }

    private static func keyStart(in s: String, before index: String.Index) -> String.Index {
        var i = index
        while i > s.startIndex, isKeyCharacter(s[s.index(before: i)]) { i = s.index(before: i) }
        return i
    }

    private static func leadingSpace(of line: Substring) -> String { String(line.prefix { $0 == " " }) }
}

extension Substring {
    fileprivate func trimmingTrailingSpaces() -> Substring {
        var s = self
        while s.last == " " { s = s.dropLast() }
        return s
    }
}
