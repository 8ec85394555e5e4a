import ArgumentParser
import Foundation
import Modbus
import Tags

struct ModbusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "modbus", abstract: "Talk to Modbus devices directly (no agent needed).",
        subcommands: [Probe.self])

    struct Probe: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Read registers or bits from a device, for commissioning.",
            discussion: """
                Addresses are zero-based protocol addresses (holding register 40001 in PLC notation is address 0). \
                For example:

                  edgepilot modbus probe --host 10.0.0.5 --unit 1 --area holding --address 0 --count 4 \\
                      --type float32 --order CDAB
                """)

        @Option(name: .long, help: "Device host name or IP address (Modbus TCP).") var host: String?
        @Option(name: .long, help: "TCP port.") var port: Int = 502
        @Option(name: .long, help: "Serial device (Modbus RTU), e.g. /dev/ttyUSB0.") var serial: String?
        @Option(name: .long, help: "Serial speed (RTU).") var baud: Int = 19_200
        @Option(name: .long, help: "Serial parity: none, even, odd (RTU).") var parity: String = "even"
        @Option(name: .long, help: "Unit (slave) id.") var unit: Int = 1
        @Option(name: .long, help: "coil, discrete, input or holding.") var area: String = "holding"
        @Option(name: .long, help: "First address (zero-based).") var address: Int
        @Option(name: .long, help: "Number of registers or bits.") var count: Int = 1
        @Option(name: .long, help: "Decode as: int16, uint16, int32, uint32, int64, uint64, float32, float64, stringN.")
        var type: String?
        @Option(name: .long, help: "Word/byte order: ABCD, BADC, CDAB, DCBA.") var order: String = "ABCD"
        @Option(name: .long, help: "Response timeout in milliseconds.") var timeout: Int = 1000
        @OptionGroup var output: OutputOptions

        func validate() throws {
            if (host == nil) == (serial == nil) { throw ValidationError("give exactly one of --host and --serial") }
            if !(0...255).contains(unit) { throw ValidationError("--unit must be 0…255") }
            if !(1...65535).contains(port) { throw ValidationError("--port must be 1…65535") }
            if parsedArea == nil { throw ValidationError("--area must be coil, discrete, input or holding") }
            if WordOrder(rawValue: order.uppercased()) == nil {
                throw ValidationError("--order must be ABCD, BADC, CDAB or DCBA")
            }
            if let type, TagDataType(configName: type) == nil { throw ValidationError("unknown --type '\(type)'") }
            if SerialParity(rawValue: parity.lowercased()) == nil {
                throw ValidationError("--parity must be none, even or odd")
            }
        }

        var parsedArea: ModbusArea? {
            switch area.lowercased() {
            case "coil", "coils": return .coil
            case "discrete", "discrete_input", "discrete_inputs": return .discreteInput
            case "input", "input_register", "input_registers": return .inputRegister
            case "holding", "holding_register", "holding_registers": return .holdingRegister
            default: return nil
            }
        }

        struct Output: Encodable {
            var area: String
            var address: Int
            var registers: [UInt16]?
            var bits: [Bool]?
            var decoded: [String]?
        }

        func run() throws {
            let transport: DeviceTransport =
                if let host {
                    .modbusTCP(host: host, port: port)
                } else {
                    .modbusRTU(
                        serialDevice: serial!, baud: baud, parity: SerialParity(rawValue: parity.lowercased())!,
                        dataBits: 8, stopBits: 1)
                }
            let device = DeviceDefinition(
                name: "probe", transport: transport, unitID: unit, timeoutMilliseconds: timeout, retries: 0)
            let result: ModbusProbeResult
            do {
                result = try modbusProbe(
                    device: device, area: parsedArea!, address: address, count: count,
                    type: type.flatMap(TagDataType.init(configName:)), order: WordOrder(rawValue: order.uppercased())!)
            } catch {
                throw CLIError("probe failed: \(error)")
            }
            if output.json {
                return try printJSON(
                    Output(
                        area: result.area.rawValue, address: result.address,
                        registers: result.area.isBitArea ? nil : result.registers,
                        bits: result.area.isBitArea ? result.bits : nil,
                        decoded: type == nil ? nil : result.decoded.map(\.description)))
            }
            if result.area.isBitArea {
                for (i, b) in result.bits.enumerated() { print("\(result.address + i)\t\(b ? 1 : 0)") }
            } else {
                for (i, r) in result.registers.enumerated() {
                    let hex = String(r, radix: 16, uppercase: true)
                    print(
                        "\(result.address + i)\t0x\(String(repeating: "0", count: 4 - hex.count))\(hex)\t\(r)\t\(Int16(bitPattern: r))"
                    )
                }
            }
            if let type, !result.decoded.isEmpty {
                print("as \(type) \(order.uppercased()): " + result.decoded.map(\.description).joined(separator: ", "))
            }
        }
    }
}
