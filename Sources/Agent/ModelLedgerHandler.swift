import Configuration
import Foundation
import History
import LocalControl
import LoopRuntime
import Tags

/// The model ledger in the agent (decision 0031): the configuration's model becomes a version when a loop is built,
/// and `edgepilot loop NAME model …` lists, shows, adds, activates and rolls back versions. Every change attempt is
/// audited with the peer's identity, accepted or refused.
extension AgentRuntime {
    /// Registers the configuration's model of a newly built loop and decides which version it starts with: the
    /// ledger's active one when the configuration still holds the model it held last time (a restart, or a reload
    /// that changed something else), else the configuration's (its model changed, or the loop is new).
    func adoptModel(_ runner: LoopRunner) {
        let d = runner.definition
        let content = LoopModelContent(d)
        do {
            let now = HistoryClock.now()
            let (fromFile, _) = try ledger.register(
                ModelVersion(
                    loop: d.name, hash: content.hash, source: "file", content: content.canonicalJSON, createdAt: now,
                    createdBy: "config", note: "model: block of \(configPath)"))
            let configVersion = try ledger.configVersion(loop: d.name)
            let active = try ledger.active(loop: d.name)
            if configVersion == fromFile.id, let active, active.version != fromFile.id {
                do {
                    guard let version = try ledger.version(id: active.version) else {
                        throw LoopCommandError("version \(active.version) is missing from the ledger")
                    }
                    try runner.activate(model: try decodeModel(version), version: version.id)
                    logger.notice(
                        "loop keeps its model from the ledger",
                        metadata: ["loop": "\(d.name)", "version": "\(version.id)", "configuration": "\(fromFile.id)"])
                    return
                } catch {
                    logger.warning(
                        "the ledger's active model cannot drive the loop; the configuration's model is used",
                        metadata: ["loop": "\(d.name)", "version": "\(active.version)", "reason": "\(error)"])
                }
            }
            runner.setActiveModelVersion(fromFile.id)
            if configVersion != fromFile.id { try ledger.setConfigVersion(loop: d.name, version: fromFile.id) }
            if active?.version != fromFile.id {
                let why = configVersion == nil ? "the configuration's model" : "the configuration's model changed"
                try ledger.recordActivation(
                    loop: d.name, version: fromFile.id, previous: active?.version, by: "config", action: "config",
                    note: why, at: now)
                recordAudit(
                    AuditRecord(
                        timestamp: now, source: "config", tag: "loop/\(d.name)/model",
                        value: "activate \(fromFile.id)", result: "ok", detail: why))
            }
        } catch {
            // The loop runs on its configuration's model either way; only the ledger's record is missing.
            logger.warning(
                "model ledger unavailable; the loop runs on its configuration's model",
                metadata: ["loop": "\(d.name)", "error": "\(error)"])
        }
    }

    /// Starts the shadow model of a newly built loop (decision 0036): the ledger's stored shadow when the
    /// configuration's `shadow:` is what it was when last read (a restart, or a reload that changed something
    /// else), else the configuration's (it changed, or the loop is new), which is then stored.
    func adoptShadow(_ runner: LoopRunner) {
        let d = runner.definition
        do {
            let stored = try ledger.shadow(loop: d.name)
            var wanted = d.shadowVersion
            if let stored, stored.configVersion == d.shadowVersion {
                wanted = stored.version
            } else if stored != nil || d.shadowVersion != nil {
                let now = HistoryClock.now()
                try ledger.setShadow(
                    loop: d.name, version: d.shadowVersion, configVersion: d.shadowVersion, by: "config", at: now)
                recordAudit(
                    AuditRecord(
                        timestamp: now, source: "config", tag: "loop/\(d.name)/model",
                        value: "shadow \(d.shadowVersion.map(String.init) ?? "off")", result: "ok",
                        detail: "the configuration's shadow"))
            }
            guard let id = wanted else { return }
            guard let v = try ledger.version(id: id), v.loop == d.name else {
                throw LoopCommandError("loop '\(d.name)' has no model version \(id)")
            }
            try runner.setShadow(model: try decodeModel(v), version: v.id)
            logger.notice("loop runs a model in shadow", metadata: ["loop": "\(d.name)", "version": "\(v.id)"])
        } catch {
            logger.warning(
                "the shadow model cannot run; the loop runs without one",
                metadata: ["loop": "\(d.name)", "reason": "\((error as? LoopCommandError)?.description ?? "\(error)")"])
        }
    }

    func handleModel(_ request: ControlRequest, from peer: ControlPeer) -> ControlResponse {
        guard let name = request.loop else { return .failure("the command needs a loop name") }
        let source = peer.auditSource
        let changes = request.command != .loopModelList && request.command != .loopModelShow
        let action: String
        switch request.command {
        case .loopModelActivate: action = "activate \(request.value ?? "?")" + (request.force == true ? " --force" : "")
        case .loopModelRollback: action = "rollback"
        case .loopModelAdd: action = "add \(request.path ?? "?")"
        case .loopModelShadow: action = "shadow \(request.value ?? "?")"
        default: action = ""
        }
        func audit(_ result: String, _ why: String) {
            guard changes else { return }
            recordAudit(
                AuditRecord(
                    timestamp: HistoryClock.now(), source: source, tag: "loop/\(name)/model", value: action,
                    result: result, detail: why))
        }
        guard let runner = current.loops[name] else {
            audit("refused", "unknown loop")
            return .notFound(unknownLoop(name))
        }
        do {
            var message: String?
            var shown: Int64?
            switch request.command {
            case .loopModelList: break
            case .loopModelShow:
                shown = try versionID(request)
                guard let v = try ledger.version(id: shown!), v.loop == name else {
                    return .notFound("loop '\(name)' has no model version \(shown!); 'model list' shows them")
                }
            case .loopModelActivate:
                let id = try versionID(request)
                guard let v = try ledger.version(id: id), v.loop == name else {
                    audit("refused", "no such version")
                    return .notFound("loop '\(name)' has no model version \(id); 'model list' shows them")
                }
                message = try activate(v, on: runner, request: request, by: source)
                shown = id
            case .loopModelShadow:
                if request.value?.lowercased() == "off" {
                    try runner.setShadow(model: nil, version: nil)
                    try keepShadow(runner, nil, by: source)
                    message = "shadow model off"
                } else {
                    let id = try versionID(request)
                    guard let v = try ledger.version(id: id), v.loop == name else {
                        audit("refused", "no such version")
                        return .notFound("loop '\(name)' has no model version \(id); 'model list' shows them")
                    }
                    try runner.setShadow(model: try decodeModel(v), version: v.id)
                    try keepShadow(runner, v.id, by: source)
                    message = "model version \(v.id) runs in shadow from the next cycle (loop/\(name)/shadow/nrmse)"
                    shown = id
                }
            case .loopModelRollback:
                guard let target = try ledger.rollbackTarget(loop: name), let v = try ledger.version(id: target.version)
                else {
                    throw LoopCommandError("loop '\(name)' has no earlier model version to roll back to")
                }
                let model = try decodeModel(v)
                try runner.activate(model: model, version: v.id)
                try ledger.recordActivation(
                    loop: name, version: v.id, previous: target.previous, by: source, action: "rollback",
                    note: request.note ?? "", at: HistoryClock.now())
                message = "rolled back to model version \(v.id); applied at the next cycle, bumpless"
                shown = v.id
            default:
                (message, shown) = try add(request, to: runner, by: source)
            }
            var report = try ledgerReport(name, runner: runner, only: request.command == .loopModelList ? nil : shown)
            report.message = message
            report.shadow = runner.shadowModelVersion
            if let message {
                audit("ok", message)
                logger.notice(
                    "loop model", metadata: ["loop": "\(name)", "change": "\(message)", "source": "\(source)"])
            }
            var response = ControlResponse()
            response.models = report
            return response
        } catch {
            let why = (error as? LoopCommandError)?.description ?? "\(error)"
            audit("refused", why)
            if changes {
                logger.warning(
                    "loop model change refused",
                    metadata: ["loop": "\(name)", "source": "\(source)", "reason": "\(why)"])
            }
            return .failure("\(name): \(why)")
        }
    }

    /// Stores the shadow a command set, so a restart or a rebuilding reload starts it again (decision 0036).
    private func keepShadow(_ runner: LoopRunner, _ version: Int64?, by source: String) throws {
        let d = runner.definition
        try ledger.setShadow(
            loop: d.name, version: version, configVersion: d.shadowVersion, by: source, at: HistoryClock.now())
    }

    /// Checks and activates `v`: refused when it does not fit the loop, or its recorded fit is below the loop's
    /// threshold (or missing, for an identified model) without `force`.
    private func activate(
        _ v: ModelVersion, on runner: LoopRunner, request: ControlRequest, by source: String
    ) throws -> String {
        let d = runner.definition
        let force = request.force == true
        if runner.activeModelVersion == v.id { return "model version \(v.id) is already in force" }
        let threshold = d.modelMinFitPercent
        var forced = false
        if v.source == "identify" {
            let fit = v.fitPercent
            if fit == nil || fit! < threshold {
                let why =
                    fit.map {
                        "its recorded validation fit \(formatPercent($0)) % is below the loop's \(formatPercent(threshold)) %"
                    }
                    ?? "it has no recorded validation fit"
                guard force else {
                    throw LoopCommandError(
                        "model version \(v.id) refused: \(why) (model_min_fit); '--force' activates it anyway")
                }
                forced = true
            }
        }
        let model = try decodeModel(v)
        let previous = runner.activeModelVersion
        try runner.activate(model: model, version: v.id)
        try ledger.recordActivation(
            loop: d.name, version: v.id, previous: previous, by: source, action: "activate", forced: forced,
            note: request.note ?? "", at: HistoryClock.now())
        return "model version \(v.id) activated\(forced ? " (forced past the fit threshold)" : ""); "
            + "applied at the next cycle, bumpless"
    }

    /// Registers a model file the client sent (identify's output, with its provenance) as a version of the loop.
    private func add(
        _ request: ControlRequest, to runner: LoopRunner, by source: String
    ) throws -> (String, Int64) {
        let d = runner.definition
        guard let text = request.text else { throw LoopCommandError("model add needs the model file's text") }
        let file = try ModelFile.parse(yaml: text, file: request.path ?? "model file")
        let content = LoopModelContent(
            model: file.model, nominalMVs: file.nominalMVs, nominalCVs: file.nominalCVs, nominalDVs: file.nominalDVs,
            cvs: d.cvs.map(\.tag), mvs: d.mvs.map(\.tag), dvs: d.dvs)
        if let why = content.mismatch(with: d) {
            throw LoopCommandError("the model does not fit loop '\(d.name)': \(why)")
        }
        // The controller must be buildable on it; better to hear so now than at activation.
        var probe = current.configuration
        probe.loops = [content.applied(to: d)]
        if let problem = LoopFactory.check(probe).first {
            throw LoopCommandError(problem)
        }
        let (version, created) = try ledger.register(
            ModelVersion(
                loop: d.name, hash: content.hash, source: file.identified ? "identify" : "file",
                content: content.canonicalJSON, window: file.window, dataHash: file.dataHash,
                fitPercent: file.fitPercent, fitDetail: file.fitDetail, createdAt: HistoryClock.now(),
                createdBy: source, note: request.note ?? ""))
        return (
            created
                ? "model version \(version.id) added (\(version.source)); 'model activate \(version.id)' puts it in force"
                : "the ledger already holds this model as version \(version.id)",
            version.id
        )
    }

    private func versionID(_ request: ControlRequest) throws -> Int64 {
        guard let text = request.value, let id = Int64(text.hasPrefix("v") ? String(text.dropFirst()) : text) else {
            throw LoopCommandError(
                "expected a model version id (a number, as 'model list' shows), not '\(request.value ?? "")'")
        }
        return id
    }

    private func decodeModel(_ v: ModelVersion) throws -> LoopModelContent {
        do {
            return try LoopModelContent.decode(v.content)
        } catch {
            throw LoopCommandError("model version \(v.id) cannot be read from the ledger: \(error)")
        }
    }

    private func ledgerReport(_ name: String, runner: LoopRunner, only: Int64?) throws -> ModelLedgerReport {
        let active = runner.activeModelVersion
        let versions = try ledger.versions(loop: name).filter { only == nil || $0.id == only }
        return ModelLedgerReport(
            loop: name, active: active, minFitPercent: runner.definition.modelMinFitPercent,
            versions: versions.map { v in
                ModelVersionReport(
                    id: v.id, hash: v.hash, source: v.source, window: v.window, dataHash: v.dataHash,
                    fitPercent: v.fitPercent, fitDetail: v.fitDetail, createdAt: v.createdAt, createdBy: v.createdBy,
                    note: v.note, active: v.id == active,
                    model: only == nil ? nil : try? LoopModelContent.decode(v.content))
            },
            activations: try ledger.activations(loop: name, limit: 20).map {
                ModelActivationReport(
                    version: $0.version, previous: $0.previous, timestamp: $0.timestamp, activatedBy: $0.activatedBy,
                    action: $0.action, forced: $0.forced, note: $0.note)
            })
    }
}

private func formatPercent(_ x: Double) -> String { String(format: "%.1f", x) }
