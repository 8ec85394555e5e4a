import Foundation
import TestSupport

enum SparkplugAgentConfig {
    /// The quadruple-tank plant's four levels, a writable pump voltage and a raw int16 level.
    static func text(
        modbusPort: Int, brokerPort: Int, primaryHost: String? = nil, metricsPerMessage: Int = 500,
        messagesPerSecond: Double = 20, confirmLive: Bool = true, sparkplugExtra: String = "",
        pollPeriod: String = "100ms", keepalive: String = "5s", storeAndForwardExtra: [String] = [],
        replayExtra: [String] = []
    ) -> String {
        """
        agent:
          control_socket: @DIR@/control.sock
          log_level: info
        poll_groups:
          - name: fast
            period: \(pollPeriod)
        history:
          path: @DIR@/history.db
          commit_interval: 100ms
        devices:
          - name: plant
            type: modbus_tcp
            host: 127.0.0.1
            port: \(modbusPort)
            timeout: 500ms
            reconnect_min: 100ms
            reconnect_max: 500ms
        tags:
          - {name: tank1/level, device: plant, area: input_register, address: 0, type: float32, units: cm}
          - {name: tank2/level, device: plant, area: input_register, address: 2, type: float32, units: cm}
          - {name: tank3/level, device: plant, area: input_register, address: 4, type: float32, order: CDAB, units: cm}
          - {name: tank4/level, device: plant, area: input_register, address: 6, type: float32, units: cm}
          - name: pump1/voltage
            device: plant
            area: holding_register
            address: 0
            type: float32
            units: V
            description: Pump 1 drive voltage
            writable: true
            limits: {min: 0, max: 10}
          - {name: tank1/raw, device: plant, area: input_register, address: 100, type: int16}
        sparkplug:
          group_id: Plant1
          edge_node_id: edge1
        \(primaryHost.map { "  primary_host_id: \($0)\n" } ?? "")  brokers:
            - url: mqtt://127.0.0.1:\(brokerPort)
          keepalive: \(keepalive)
          reconnect_min: 100ms
          reconnect_max: 500ms
          store_and_forward:
            confirm_live: \(confirmLive)
        \(storeAndForwardExtra.map { "    \($0)\n" }.joined())  replay:
            metrics_per_message: \(metricsPerMessage)
            messages_per_second: \(messagesPerSecond)
        \(replayExtra.map { "    \($0)\n" }.joined())\(sparkplugExtra)
        """
    }
}
