import Foundation

/// The whole chain an agent-level Sparkplug test needs, started in data-flow order and stopped in reverse: a plant
/// simulator serving Modbus, a mosquitto broker, the agent (`edgepilot run`) and an independent host recording what
/// Ignition would receive. Every test builds its setup here instead of repeating it.
public final class SparkplugScenario: @unchecked Sendable {
    public let plant: QuadTank
    public let broker: MosquittoBroker
    public let agent: AgentProcess
    public let host: HostRecorder
    private var stopped = false

    /// How the recording host connects.
    public struct Host {
        public var hostID: String?
        /// The host publishes its STATE only when the test asks (to test gating).
        public var manualState: Bool
        public var keepalive: Int
        public var extraArguments: [String]

        public init(
            hostID: String? = nil, manualState: Bool = false, keepalive: Int = 5, extraArguments: [String] = []
        ) {
            self.hostID = hostID
            self.manualState = manualState
            self.keepalive = keepalive
            self.extraArguments = extraArguments
        }
    }

    /// Starts `plant` (already running), a broker (a plain local mosquitto unless one is given, started), the
    /// recording host, then the agent on `config(plantPort, brokerPort)` unless `startAgent` is false.
    public init(
        plant: QuadTank, broker: MosquittoBroker? = nil, host: Host = Host(), startAgent: Bool = true,
        config: (_ plantPort: Int, _ brokerPort: Int) throws -> String
    ) throws {
        self.plant = plant
        do {
            if let broker {
                self.broker = broker
            } else {
                let b = try MosquittoBroker()
                try b.start()
                self.broker = b
            }
            agent = try AgentProcess(config: config(plant.port, self.broker.port), start: false)
            self.host = try HostRecorder(
                port: self.broker.port, directory: agent.dir.path, hostID: host.hostID, manualState: host.manualState,
                keepalive: host.keepalive, extraArguments: host.extraArguments)
        } catch {
            broker?.stop()
            plant.stop()
            throw error
        }
        if startAgent { try agent.start() }
    }

    /// Agent, host, broker, plant; safe to call twice.
    public func stop() {
        guard !stopped else { return }
        stopped = true
        agent.stop()
        host.stop()
        broker.stop()
        plant.stop()
    }

    deinit { stop() }
}
