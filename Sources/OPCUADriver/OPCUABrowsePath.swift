import OPCUA

/// Browse-path text → the OPC UA client's path elements.
enum OPCUABrowsePath {
    static func parse(_ text: String) -> [RelativePathElement]? {
        var parts = text.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        if parts.first == "" { parts.removeFirst() }
        if parts.first == "Objects" || parts.first == "0:Objects" { parts.removeFirst() }
        guard !parts.isEmpty else { return nil }
        var steps: [RelativePathElement] = []
        for part in parts {
            if let colon = part.firstIndex(of: ":"), let ns = UInt16(part[..<colon]) {
                let name = String(part[part.index(after: colon)...])
                guard !name.isEmpty else { return nil }
                steps.append(RelativePathElement(QualifiedName(namespace: ns, name)))
            } else {
                guard !part.isEmpty else { return nil }
                steps.append(RelativePathElement(QualifiedName(part)))
            }
        }
        return steps
    }
}
