import Agent
import ArgumentParser
import Foundation
import LocalControl
import LoopRuntime
import SparkplugPublisher

/// `edgepilot mqtt …`: the Sparkplug B edge node's session, backlog and rebirth.
struct MQTTCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mqtt",
        abstract: "Show the Sparkplug/MQTT session, ask for a rebirth, or watch the node's traffic.",
        subcommands: [Status.self, Rebirth.self, Watch.self])

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Broker, session state, bdSeq, seq, Primary Host, store-and-forward backlog and drops.")

        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var output: OutputOptions

        func run() throws {
            let response = try connection.send(ControlRequest(command: .mqttStatus))
            guard response.ok, let s = response.mqtt else { throw CLIError(response.error ?? "no MQTT status") }
            if output.json { return try printJSON(s) }
            print(mqttStatusText(s))
        }
    }

    struct Rebirth: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Publish NBIRTH and every DBIRTH again (same bdSeq), as the host's Rebirth command does.")

        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var output: OutputOptions

        func run() throws {
            let response = try connection.send(ControlRequest(command: .mqttRebirth))
            guard response.ok, let s = response.mqtt else { throw CLIError(response.error ?? "no MQTT status") }
            if output.json { return try printJSON(s) }
            print(
                s.sessionState == "online"
                    ? "rebirth requested"
                    : "rebirth requested; the session is \(s.sessionState), births follow once online")
        }
    }
}

func mqttStatusText(_ s: MQTTStatusReport) -> String {
    var lines = [
        "edge node \(s.groupID)/\(s.edgeNodeID)  session \(s.sessionState)  "
            + "broker \(s.broker ?? "-") (\(s.connected ? "connected" : "not connected"))",
        "bdSeq \(s.bdSeq.map(String.init) ?? "-")  seq \(s.seq)  births \(s.births)  connects \(s.connects)  "
            + "messages \(s.messagesPublished)",
    ]
    if let host = s.primaryHostID {
        let state = s.primaryHostOnline.map { $0 ? "online" : "offline" } ?? "not seen on this connection"
        let at = s.primaryHostStateTimestamp.map { " (STATE timestamp \($0))" } ?? ""
        let refused = (s.statesRejected ?? 0) > 0 ? ", \(s.statesRejected!) STATE refused" : ""
        lines.append("primary host \(host): \(state)\(at)\(refused)")
    }
    if let delay = s.startupDelay, let at = s.firstConnectAt {
        let wait = (Double(at) / 1e6 - Date().timeIntervalSince1970)
        let state = wait > 0 ? "first connection in \(String(format: "%.1f", wait)) s" : "elapsed"
        lines.append("startup delay \(delay) ms (\(state))")
    }
    if let ignored = s.nextServerIgnored, ignored > 0 {
        lines.append("Next Server: \(ignored) ignored (at most one every 30 s)")
    }
    lines.append(
        "store-and-forward: backlog \(s.backlog) samples (\(formatBytes(s.backlogBytes))), dropped \(s.dropped), "
            + "replay in flight \(s.replayInFlight), replayed \(s.replayedMetrics)")
    if let delivery = s.replayDelivery {
        let rate = s.replayMessagesPerSecond.map { $0 > 0 ? String(format: "%g messages/s", $0) : "unthrottled" }
        let measured = s.replayDrainRate.map { String(format: "%.0f metrics/s", $0) } ?? "-"
        let eta = s.replayETASeconds.map { ", ETA \($0) s" } ?? ""
        let held = s.liveHeld == true ? " (live data held until the backlog is drained)" : ""
        lines.append(
            "replay: delivery \(delivery)\(held), \(s.replayMetricsPerMessage ?? 0) metrics/message, "
                + "\(rate ?? "-"); drained \(measured) over the last 10 s, backlog \(s.backlog)\(eta)")
    }
    if let c = s.compression, c != "off" { lines.append("compression: \(c) (births and data)") }
    lines.append(
        "live confirmation: unconfirmed \(s.unconfirmed), receipts \(s.receiptRequests), confirmed \(s.liveConfirmed), "
            + "queued unconfirmed \(s.liveRequeued)")
    lines.append(
        "commands (\(s.commandPolicy ?? "-")): written \(s.commandsWritten), refused \(s.commandsRefused), "
            + "failed \(s.commandsFailed), rejected \(s.commandsRejected), expired \(s.commandsExpired ?? 0), "
            + "dropped by limits \(s.commandsDropped ?? 0), queued \(s.commandQueue ?? 0)")
    if s.feedDropped > 0 { lines.append("changes lost by a full publisher queue: \(s.feedDropped)") }
    if let e = s.lastError { lines.append("last error: \(e)") }
    return lines.joined(separator: "\n")
}
