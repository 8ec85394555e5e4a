import Tags

/// The loop device as a Sparkplug template instance (docs/decisions/0037-sparkplug-templates.md): members named by
/// position rather than by the CV and MV tags, so every loop with the same number of CVs and MVs is an instance of
/// one definition, and the tags themselves travel as the instance's parameters.
extension LoopStateDevice {
    /// The definition loops of this shape share, e.g. `EdgePilot/Loop_2CV_1MV`.
    package var templateDefinitionName: String {
        "EdgePilot/Loop_\(runner.definition.cvs.count)CV_\(runner.definition.mvs.count)MV"
    }

    /// The member name of each tag, by tag name: `mode`, `reason`, `model/version`, `cv1/value`, `cv1/setpoint`,
    /// `kpi/cv1/iae`, `mv1/value`, … (the tag's name after `loop/<name>/`, CV and MV tags replaced by their
    /// position).
    package var templateMembers: [String: String] {
        let d = runner.definition
        let prefix = "loop/\(d.name)/"
        var members: [String: String] = [:]
        for (k, tag) in table.definitions.enumerated() {
            var member = String(tag.name.dropFirst(prefix.count))
            if let i = fields[k].cvIndex {
                member = member.replacingFirst("cv/\(d.cvs[i].tag)/", with: "cv\(i + 1)/")
            } else if let l = fields[k].mvIndex {
                member = member.replacingFirst("mv/\(d.mvs[l].tag)/", with: "mv\(l + 1)/")
            }
            members[tag.name] = member
        }
        return members
    }

    /// The instance's parameters: the loop's name and the tag behind each CV and MV position.
    package var templateParameters: [(name: String, value: String)] {
        let d = runner.definition
        var parameters: [(name: String, value: String)] = [(name: "loop", value: d.name)]
        for (i, cv) in d.cvs.enumerated() { parameters.append((name: "cv\(i + 1)", value: cv.tag)) }
        for (l, mv) in d.mvs.enumerated() { parameters.append((name: "mv\(l + 1)", value: mv.tag)) }
        return parameters
    }
}

extension LoopStateDevice.Field {
    var cvIndex: Int? {
        switch self {
        case .cvValue(let i), .setpoint(let i), .iae(let i), .oscillating(let i): return i
        default: return nil
        }
    }

    var mvIndex: Int? {
        switch self {
        case .mvValue(let l), .saturation(let l): return l
        default: return nil
        }
    }
}

extension String {
    /// Without Foundation: the first occurrence of `target` replaced.
    fileprivate func replacingFirst(_ target: String, with replacement: String) -> String {
        guard !target.isEmpty else { return self }
        var i = startIndex
        while i < endIndex {
            if self[i...].hasPrefix(target) {
                return String(self[..<i]) + replacement + String(self[index(i, offsetBy: target.count)...])
            }
            i = index(after: i)
        }
        return self
    }
}
