/// `edgepilot config diff`: what a reload of a configuration file would do to the running agent, decided by the
/// agent itself from its running configuration and the file as the service reads it.
public struct ReloadPreview: Codable, Sendable {
    /// One device's or loop's fate: `keep` (runs on without a gap), `restart`, `add` or `remove`.
    public struct Item: Codable, Sendable {
        public var kind: String
        public var name: String
        public var action: String
        public var reasons: [String]

        public init(kind: String, name: String, action: String, reasons: [String]) {
            self.kind = kind
            self.name = name
            self.action = action
            self.reasons = reasons
        }
    }

    /// One problem found in the file, located as `config check` locates it.
    public struct Diagnostic: Codable, Sendable {
        public var severity: String
        public var file: String
        public var line: Int
        public var column: Int
        public var message: String
        public var hint: String?

        public init(severity: String, file: String, line: Int, column: Int, message: String, hint: String?) {
            self.severity = severity
            self.file = file
            self.line = line
            self.column = column
            self.message = message
            self.hint = hint
        }
    }

    /// The file compared (absolute, as the agent read it) and the file the agent runs from.
    public var file: String
    public var runningFile: String
    /// False when a reload would be refused: the running configuration would stay, nothing would change.
    public var accepted: Bool
    public var diagnostics: [Diagnostic]
    public var items: [Item]
    /// Settings a reload leaves as they run; applying them needs a restart of the agent.
    public var needsRestart: [String]
    /// Whether the Sparkplug edge node would start a new session with new births.
    public var newBirths: Bool

    public init(
        file: String, runningFile: String, accepted: Bool, diagnostics: [Diagnostic], items: [Item],
        needsRestart: [String], newBirths: Bool
    ) {
        self.file = file
        self.runningFile = runningFile
        self.accepted = accepted
        self.diagnostics = diagnostics
        self.items = items
        self.needsRestart = needsRestart
        self.newBirths = newBirths
    }
}
