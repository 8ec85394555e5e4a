import Control
import Devices
import Foundation
import History
import LocalControl
import LoopRuntime
import ModbusDriver
import OPCUADriver
import SparkplugPublisher
import Systemd

/// Loop commands over the control socket: listing, mode, setpoint, manual MV and tuning. Every change attempt is
/// audited with the peer's identity, accepted or refused; the loop applies accepted changes at its next cycle.
extension AgentRuntime {
    func handleLoop(_ request: ControlRequest, from peer: ControlPeer) -> ControlResponse {
        let loops = current.loops
        if request.command == .loops {
            let selected = loops.values.filter { request.loop == nil || $0.definition.name == request.loop }
                .sorted { $0.definition.name < $1.definition.name }
            if let name = request.loop, selected.isEmpty { return .notFound(unknownLoop(name)) }
            return ControlResponse(loops: selected.map { $0.snapshot() }, kpis: selected.map { $0.kpis() })
        }
        let source = peer.auditSource
        guard let name = request.loop else { return .failure("the command needs a loop name") }
        let what: String
        let detail: String
        switch request.command {
        case .loopMode: (what, detail) = ("mode", request.value ?? "")
        case .loopSetpoint: (what, detail) = ("setpoint", "\(request.tag ?? "?")=\(request.value ?? "")")
        case .loopManual: (what, detail) = ("mv", "\(request.tag ?? "?")=\(request.value ?? "")")
        default: (what, detail) = ("tune", Self.describe(request.tune))
        }
        func audit(_ result: String, _ why: String) {
            recordAudit(
                AuditRecord(
                    timestamp: HistoryClock.now(), source: source, tag: "loop/\(name)/\(what)", value: detail,
                    result: result, detail: why))
        }
        guard let runner = loops[name] else {
            audit("refused", "unknown loop")
            return .notFound(unknownLoop(name))
        }
        do throws(LoopCommandError) {
            switch request.command {
            case .loopMode:
                guard let text = request.value, let mode = LoopMode(rawValue: text.lowercased()), mode != .test else {
                    throw LoopCommandError(
                        "mode must be mpc, pid or manual, not '\(request.value ?? "")' (a plant test starts with 'test start')"
                    )
                }
                runner.requestMode(mode)
            case .loopSetpoint, .loopManual:
                guard let tag = request.tag, let text = request.value, let value = Double(text), value.isFinite else {
                    throw LoopCommandError("expected a tag and a number, got '\(request.value ?? "")'")
                }
                if request.command == .loopSetpoint {
                    try runner.setSetpoint(cv: tag, value)
                } else {
                    try runner.setManual(mv: tag, value)
                }
            default:
                guard let tune = request.tune else { throw LoopCommandError("tune needs at least one parameter") }
                try runner.tune(tune)
            }
        } catch {
            audit("refused", error.description)
            logger.warning(
                "loop \(what) refused", metadata: ["loop": "\(name)", "source": "\(source)", "reason": "\(error)"])
            return .failure("\(name): \(error)")
        }
        audit("ok", "applied at the next cycle")
        logger.notice("loop \(what)", metadata: ["loop": "\(name)", "value": "\(detail)", "source": "\(source)"])
        return ControlResponse(loops: [runner.snapshot()])
    }

    func unknownLoop(_ name: String) -> String {
        let names = current.loops.keys.sorted()
        return "no loop named '\(name)'"
            + (names.isEmpty ? "; none is configured" : "; loops: \(names.joined(separator: ", "))")
    }

    static func describe(_ tune: LoopTuneRequest?) -> String {
        guard let tune else { return "" }
        var parts: [String] = []
        for (label, values) in [
            ("cv_weight", tune.cvWeights), ("move_weight", tune.moveWeights), ("pid_gain", tune.pidGains),
            ("pid_ti", tune.pidIntegralSeconds), ("pid_td", tune.pidDerivativeSeconds),
        ] {
            for (k, v) in (values ?? [:]).sorted(by: { $0.key < $1.key }) { parts.append("\(label) \(k)=\(v)") }
        }
        return parts.joined(separator: ", ")
    }
}
