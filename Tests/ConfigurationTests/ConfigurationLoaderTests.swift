import Foundation
import Tags
import Testing

@testable import Configuration

private let base = """
    poll_groups:
      - name: fast
        period: 100ms
    devices:
      - name: plc
        type: modbus_tcp
        host: 127.0.0.1
        port: 5020
    tags:
    """

private func errors(_ yaml: String, file: String = "test.yaml", dir: String = ".") -> [ConfigDiagnostic] {
    do {
        _ = try ConfigurationLoader.parse(yaml: yaml, file: file, baseDirectory: dir)
        return []
    } catch {
        return error.errors
    }
}

private func tag(_ fields: String) -> String {
    "  - " + fields.split(separator: "\n").joined(separator: "\n    ")
}

@Suite struct ConfigurationLoaderTests {
    @Test func demoConfigurationLoads() throws {
        let path = URL(fileURLWithPath: #filePath).resolvingSymlinksInPath().deletingLastPathComponent()
            .appendingPathComponent("../../Config/demo-plant.yaml").standardized.path
        let loaded = try ConfigurationLoader.load(contentsOf: path)
        let c = loaded.configuration
        #expect(c.devices.count == 1)
        #expect(c.devices[0].transport == .modbusTCP(host: "127.0.0.1", port: 5020))
        #expect(c.devices[0].timeoutMilliseconds == 500)
        #expect(c.pollGroups.map(\.name) == ["fast", "slow"])
        #expect(c.tags.count == 16)
        let h3 = try #require(c.tags.first { $0.name == "tank3/level" })
        #expect(h3.order == .cdab && h3.type == .float32 && h3.source == .modbus(area: .inputRegister, address: 4))
        let scaled = try #require(c.tags.first { $0.name == "tank1/level_int" })
        #expect(scaled.scaling == Scaling(rawLow: 0, rawHigh: 2000, engineeringLow: 0, engineeringHigh: 20))
        #expect(scaled.pollGroup == "slow" && scaled.deadband == 0.05)
        #expect(c.tags.first { $0.name == "plant/tag_text" }?.type == .string(registers: 4))
        #expect(c.history.retentionSeconds == 30 * 86_400 && c.history.maxBytes == 1 << 30)
        #expect(loaded.tagLocations["tank1/level_int"]?.file.hasSuffix("demo-plant-registers.csv") == true)
        #expect(loaded.tagLocations["tank1/level_int"]?.line == 3)
    }

    @Test func unknownKeyIsReportedWithLineAndSuggestion() {
        let yaml = base + "\n" + tag("name: a\ndevice: plc\narea: holding_register\naddres: 4\ntype: int16")
        let e = errors(yaml)
        let unknown = e.first { $0.message.contains("unknown key 'addres'") }
        #expect(unknown?.line == 13)
        #expect(unknown?.hint == "did you mean 'address'?")
        #expect(e.contains { $0.message.contains("missing 'address'") })
    }

    @Test func everyErrorIsReportedNotJustTheFirst() {
        let yaml =
            base + "\n"
            + [
                tag("name: dup\ndevice: plc\narea: holding_register\naddress: 0\ntype: int16"),
                tag("name: dup\ndevice: plc\narea: holding_register\naddress: 10\ntype: float32"),
                tag("name: overlap\ndevice: plc\narea: holding_register\naddress: 11\ntype: float32"),
                tag("name: late\ndevice: plc\narea: holding_register\naddress: 65534\ntype: float64"),
                tag("name: bitreg\ndevice: plc\narea: holding_register\naddress: 100\ntype: bool"),
                tag("name: wordcoil\ndevice: plc\narea: coil\naddress: 0\ntype: int16"),
                tag("name: swapped16\ndevice: plc\narea: holding_register\naddress: 200\ntype: int16\norder: CDAB"),
                tag("name: nolimits\ndevice: plc\narea: holding_register\naddress: 300\ntype: float32\nwritable: true"),
                tag(
                    "name: roinput\ndevice: plc\narea: input_register\naddress: 0\ntype: uint16\nwritable: true\n"
                        + "limits: {min: 0, max: 10}"),
                tag("name: ghost\ndevice: nosuch\narea: coil\naddress: 5\ntype: bool"),
                tag("name: slowpoke\ndevice: plc\narea: coil\naddress: 6\ntype: bool\npoll_group: slow"),
                tag(
                    "name: badlimits\ndevice: plc\narea: holding_register\naddress: 400\ntype: int16\nwritable: true\n"
                        + "limits: {min: 0, max: 40000}"),
            ].joined(separator: "\n")
        let e = errors(yaml)
        func line(_ fragment: String) -> Int? { e.first { $0.message.contains(fragment) }?.line }
        #expect(line("tag 'dup' is defined twice") == 15)
        #expect(line("'overlap' (holding_register 11…12) overlaps tag 'dup'") == 20)
        #expect(line("'late': float64 at address 65534 runs past") == 25)
        #expect(line("'bitreg': type bool does not fit area holding_register") == 30)
        #expect(line("'wordcoil': type int16 does not fit area coil") == 35)
        #expect(line("'swapped16': word order CDAB needs") == 40)
        #expect(line("'nolimits' is writable but has no limits") == 46)
        #expect(line("'roinput' is writable, but input_register cannot be written") == 52)
        #expect(line("names device 'nosuch'") == 59)
        #expect(line("names poll group 'slow'") == 64)
        #expect(line("limit max 40000 cannot be written as int16") == 70)
        #expect(e.count == 11, "\(e)")
    }

    @Test func invalidYAMLPointsAtTheLine() {
        let e = errors("devices:\n  - name: a\n   type: [unclosed\n")
        #expect(e.count == 1)
        #expect(e[0].message.hasPrefix("invalid YAML"))
        #expect(e[0].line >= 3)
    }

    @Test func wrongValueTypesAreExplained() {
        let yaml = """
            poll_groups:
              - name: fast
                period: 100
            devices:
              - name: plc
                type: modbus_tcp
                host: 127.0.0.1
                port: 70000
                timeout: soon
              - name: rtu
                type: modbus_rtu
                serial_device: /dev/ttyUSB0
                parity: maybe
            """
        let e = errors(yaml)
        #expect(e.first { $0.message.contains("'period' in a poll group must be a duration") }?.line == 3)
        #expect(e.first { $0.message.contains("'port' in a device must be between 1 and 65535") }?.line == 8)
        #expect(e.first { $0.message.contains("'timeout' in a device must be a duration") }?.line == 9)
        #expect(e.first { $0.message.contains("parity must be none, even or odd") }?.line == 13)
    }

    @Test func csvRegisterMapErrorsPointIntoTheCSV() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ep-cfg-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let csv = """
            name,area,address,type,order,units,raw_low,raw_high,eng_low,eng_high
            ok1,holding_register,0,int16,ABCD,cm,0,100,0,10
            bad1,holding_register,1,int17,ABCD,cm,,,,
            "quoted, name",holding_register,2,uint16,,,,,,
            bad2,holding_registers,3,int16,,,,,,
            """
        try csv.write(to: dir.appendingPathComponent("map.csv"), atomically: true, encoding: .utf8)
        let yaml = base + " []\ntag_files:\n  - file: map.csv\n    device: plc\n    poll_group: fast\n"
        let e = errors(yaml, dir: dir.path)
        let mapPath = dir.path + "/map.csv"
        #expect(e.contains { $0.file == mapPath && $0.line == 3 && $0.message.contains("unknown type 'int17'") })
        #expect(e.contains { $0.file == mapPath && $0.line == 5 && $0.message.contains("unknown area") })
        #expect(e.count == 2)

        try csv.split(separator: "\n").enumerated().filter { ![2, 4].contains($0.offset) }.map(\.element)
            .joined(separator: "\n").write(to: dir.appendingPathComponent("map.csv"), atomically: true, encoding: .utf8)
        let loaded = try ConfigurationLoader.parse(yaml: yaml, file: "test.yaml", baseDirectory: dir.path)
        #expect(loaded.configuration.tags.map(\.name) == ["ok1", "quoted, name"])
        #expect(loaded.configuration.tags[0].scaling?.toEngineering(50) == 5)
    }

    @Test func unreadableFileIsAClearError() {
        #expect(throws: ConfigurationError.self) {
            try ConfigurationLoader.load(contentsOf: "/nonexistent/edgepilot.yaml")
        }
        do {
            _ = try ConfigurationLoader.load(contentsOf: "/nonexistent/edgepilot.yaml")
        } catch {
            #expect(error.description.contains("cannot read the configuration file"))
        }
    }

    @Test func unitsParse() {
        #expect(UnitParser.milliseconds("250ms") == 250)
        #expect(UnitParser.milliseconds("1.5s") == 1500)
        #expect(UnitParser.milliseconds("10m") == 600_000)
        #expect(UnitParser.milliseconds("30d") == 2_592_000_000)
        #expect(UnitParser.milliseconds("10") == nil)
        #expect(UnitParser.milliseconds("-1s") == nil)
        #expect(UnitParser.bytes("1GiB") == 1_073_741_824)
        #expect(UnitParser.bytes("500MB") == 500_000_000)
        #expect(UnitParser.bytes("4096") == 4096)
        #expect(UnitParser.bytes("lots") == nil)
    }
}
