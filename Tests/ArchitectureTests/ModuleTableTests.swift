import Foundation
import Testing

/// docs/ARCHITECTURE.md is the project's picture of its modules; these tests keep it from drifting away from
/// Package.swift: every module under Sources/ has a row, every row names a module, and each row's "depends on"
/// column lists exactly the module's dependencies inside the package (external packages are named in the column
/// for the reader but not checked here: SwiftPM already resolves them).
@Suite("docs/ARCHITECTURE.md agrees with Package.swift")
struct ModuleTableTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    @Test("every module in Package.swift has a row in the module table, and every row names a module")
    func moduleNamesAgree() throws {
        let package = try PackageManifest(
            text: String(contentsOf: Self.root.appending(path: "Package.swift"), encoding: .utf8))
        let table = try ModuleTable(
            markdown: String(contentsOf: Self.root.appending(path: "docs/ARCHITECTURE.md"), encoding: .utf8))
        let modules = Set(package.targets.filter(\.isModule).map(\.name))
        let rows = Set(table.rows.flatMap(\.modules))
        #expect(modules.subtracting(rows).sorted() == [], "modules missing from the table in docs/ARCHITECTURE.md")
        #expect(rows.subtracting(modules).sorted() == [], "rows in docs/ARCHITECTURE.md naming no module")
    }

    @Test("each row's 'depends on' column lists exactly the module's dependencies inside the package")
    func dependenciesAgree() throws {
        let package = try PackageManifest(
            text: String(contentsOf: Self.root.appending(path: "Package.swift"), encoding: .utf8))
        let table = try ModuleTable(
            markdown: String(contentsOf: Self.root.appending(path: "docs/ARCHITECTURE.md"), encoding: .utf8))
        let local = Set(package.targets.map(\.name))
        for row in table.rows {
            for name in row.modules {
                guard let target = package.targets.first(where: { $0.name == name }) else { continue }
                let declared = Set(target.dependencies.filter(local.contains))
                let drawn = Set(row.dependsOn.filter(local.contains))
                #expect(
                    declared == drawn, "\(name): Package.swift says \(declared.sorted()), the table \(drawn.sorted())")
            }
        }
    }

    @Test("pure modules import no Foundation, no Glibc and no C library")
    func pureModulesStayPure() throws {
        let package = try PackageManifest(
            text: String(contentsOf: Self.root.appending(path: "Package.swift"), encoding: .utf8))
        let table = try ModuleTable(
            markdown: String(contentsOf: Self.root.appending(path: "docs/ARCHITECTURE.md"), encoding: .utf8))
        let forbidden = Set(
            ["Foundation", "FoundationEssentials", "Dispatch", "Glibc", "CAllocCounter"]
                + package.targets.filter { $0.kind == "systemLibrary" }.map(\.name))
        let pure = table.rows.filter { $0.job.hasPrefix("pure") }.flatMap(\.modules)
        #expect(pure.contains("Tags") && pure.contains("Control"))
        for module in pure {
            let folder = Self.root.appending(path: "Sources/\(module)")
            let files = try FileManager.default.subpathsOfDirectory(atPath: folder.path).filter {
                $0.hasSuffix(".swift")
            }
            for file in files {
                let text = try String(contentsOf: folder.appending(path: file), encoding: .utf8)
                for line in text.split(separator: "\n") where line.hasPrefix("import ") {
                    let imported = line.dropFirst("import ".count).trimmingCharacters(in: .whitespaces)
                    #expect(!forbidden.contains(imported), "\(module)/\(file) imports \(imported)")
                }
            }
        }
    }
}

/// The targets of Package.swift, read from its text (running SwiftPM inside `swift test` would wait on its lock).
struct PackageManifest {
    struct Target {
        var kind: String
        var name: String
        var path: String?
        var dependencies: [String]
        /// A module of the product: under Sources/, not a test or a benchmark.
        var isModule: Bool { kind != "testTarget" && (path == nil || path!.hasPrefix("Sources/")) }
    }
    var targets: [Target] = []

    init(text: String) throws {
        let scalars = Array(text.unicodeScalars)
        var i = 0
        while i < scalars.count {
            guard scalars[i] == ".", let kind = Self.kind(at: i + 1, in: scalars) else {
                i += 1
                continue
            }
            let open = i + 1 + kind.unicodeScalars.count
            guard open < scalars.count, scalars[open] == "(" else {
                i += 1
                continue
            }
            let close = Self.matching(from: open, in: scalars)
            let body = String(String.UnicodeScalarView(scalars[(open + 1)..<close]))
            if let name = Self.string(after: "name:", in: body) {
                targets.append(
                    Target(
                        kind: kind, name: name, path: Self.string(after: "path:", in: body),
                        dependencies: Self.dependencies(in: body)))
            }
            i = close
        }
    }

    private static func kind(at i: Int, in s: [Unicode.Scalar]) -> String? {
        for k in ["executableTarget", "testTarget", "systemLibrary", "target"] {
            let u = Array(k.unicodeScalars)
            if i + u.count <= s.count && Array(s[i..<(i + u.count)]) == u { return k }
        }
        return nil
    }

    private static func matching(from open: Int, in s: [Unicode.Scalar]) -> Int {
        var depth = 0
        var i = open
        while i < s.count {
            if s[i] == "(" || s[i] == "[" { depth += 1 }
            if s[i] == ")" || s[i] == "]" {
                depth -= 1
                if depth == 0 { return i }
            }
            i += 1
        }
        return s.count - 1
    }

    private static func string(after key: String, in body: String) -> String? {
        guard let k = body.range(of: key) else { return nil }
        let rest = body[k.upperBound...].drop { $0 == " " || $0 == "\n" }
        guard rest.first == "\"" else { return nil }
        return String(rest.dropFirst().prefix { $0 != "\"" })
    }

    /// The bare strings of `dependencies: [...]` (local targets and external products by name); `.product(…)`
    /// entries are skipped.
    private static func dependencies(in body: String) -> [String] {
        guard let k = body.range(of: "dependencies:") else { return [] }
        let scalars = Array(body[k.upperBound...].unicodeScalars)
        guard let open = scalars.firstIndex(of: "[") else { return [] }
        var result: [String] = []
        var depth = 0
        var i = open
        while i < scalars.count {
            let c = scalars[i]
            if c == "[" || c == "(" { depth += 1 }
            if c == "]" || c == ")" {
                depth -= 1
                if depth == 0 { break }
            }
            if c == "\"" && depth == 1 {
                var j = i + 1
                while j < scalars.count && scalars[j] != "\"" { j += 1 }
                result.append(String(String.UnicodeScalarView(scalars[(i + 1)..<j])))
                i = j
            } else if c == "\"" {
                var j = i + 1
                while j < scalars.count && scalars[j] != "\"" { j += 1 }
                i = j
            }
            i += 1
        }
        return result
    }
}

/// The "## Modules" table of docs/ARCHITECTURE.md: `| module(s) | job | depends on |`.
struct ModuleTable {
    struct Row {
        var modules: [String]
        var job: String
        var dependsOn: [String]
    }
    var rows: [Row] = []

    struct Missing: Error, CustomStringConvertible {
        var description: String { "docs/ARCHITECTURE.md has no '## Modules' table" }
    }

    init(markdown: String) throws {
        guard let section = markdown.range(of: "\n## Modules\n") else { throw Missing() }
        let lines = markdown[section.upperBound...].split(separator: "\n", omittingEmptySubsequences: false)
        var inTable = false
        for line in lines {
            if line.hasPrefix("## ") { break }
            guard line.hasPrefix("|") else {
                if inTable { break }
                continue
            }
            inTable = true
            let cells = line.split(separator: "|", omittingEmptySubsequences: false).dropFirst().dropLast()
                .map { $0.trimmingCharacters(in: .whitespaces) }
            guard cells.count >= 3, cells[0].contains("`") else { continue }
            rows.append(Row(modules: Self.ticked(cells[0]), job: cells[1], dependsOn: Self.words(cells[2])))
        }
    }

    private static func ticked(_ cell: String) -> [String] {
        cell.split(separator: "`", omittingEmptySubsequences: false).enumerated().filter { $0.offset % 2 == 1 }.map {
            String($0.element)
        }
    }

    private static func words(_ cell: String) -> [String] {
        cell.split { !($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }.map(String.init)
    }
}
