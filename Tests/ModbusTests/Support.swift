import Foundation
import Tags
import TestSupport
import Testing

@testable import Modbus

extension QuadTank {
    func device(
        name: String = "tank", timeoutMilliseconds: Int = 500, retries: Int = 1, maxGap: Int = 0,
        reconnectMin: Int = 100, reconnectMax: Int = 1000
    ) -> DeviceDefinition {
        DeviceDefinition(
            name: name, transport: .modbusTCP(host: "127.0.0.1", port: port), unitID: 1,
            timeoutMilliseconds: timeoutMilliseconds, retries: retries, maxGap: maxGap,
            reconnectMinMilliseconds: reconnectMin, reconnectMaxMilliseconds: reconnectMax)
    }
}

func modbusTag(
    _ name: String, _ area: ModbusArea, _ address: Int, _ type: TagDataType, _ order: WordOrder = .abcd,
    scaling: Scaling? = nil, writable: Bool = false, limits: WriteLimits? = nil, device: String = "tank",
    group: String = "fast"
) -> TagDefinition {
    TagDefinition(
        name: name, device: device, source: .modbus(area: area, address: address), type: type, order: order,
        scaling: scaling, writable: writable, limits: limits, pollGroup: group)
}

let centi = Scaling(rawLow: 0, rawHigh: 100, engineeringLow: 0, engineeringHigh: 1)

/// Every register and bit of the quadruple-tank simulator's map.
func quadTankTags(device: String = "tank", group: String = "fast") -> [TagDefinition] {
    func t(
        _ n: String, _ a: ModbusArea, _ addr: Int, _ ty: TagDataType, _ o: WordOrder = .abcd, scaling: Scaling? = nil,
        writable: Bool = false, limits: WriteLimits? = nil
    ) -> TagDefinition {
        modbusTag(n, a, addr, ty, o, scaling: scaling, writable: writable, limits: limits, device: device, group: group)
    }
    return [
        t("h1", .inputRegister, 0, .float32), t("h2", .inputRegister, 2, .float32),
        t("h3", .inputRegister, 4, .float32, .cdab), t("h4", .inputRegister, 6, .float32),
        t("h1_i16", .inputRegister, 100, .int16, scaling: centi),
        t("h3_i16", .inputRegister, 102, .int16, scaling: centi),
        t("v1", .holdingRegister, 0, .float32, writable: true, limits: WriteLimits(minimum: 0, maximum: 10)),
        t("v2", .holdingRegister, 2, .float32, writable: true, limits: WriteLimits(minimum: 0, maximum: 10)),
        t("v1_i16", .holdingRegister, 10, .int16, scaling: centi, writable: true),
        t(
            "v2_i16", .holdingRegister, 11, .int16, scaling: centi, writable: true,
            limits: WriteLimits(minimum: 0, maximum: 10)),
        t("watchdog", .holdingRegister, 20, .uint16, writable: true),
        t("int32", .holdingRegister, 30, .int32), t("uint32", .holdingRegister, 32, .uint32),
        t("int64", .holdingRegister, 34, .int64), t("float64", .holdingRegister, 38, .float64),
        t("f32_badc", .holdingRegister, 42, .float32, .badc), t("f32_dcba", .holdingRegister, 44, .float32, .dcba),
        t("name", .holdingRegister, 46, .string(registers: 4)), t("int16", .holdingRegister, 50, .int16),
        t("uint16", .holdingRegister, 51, .uint16),
        t("pump1", .coil, 0, .bool, writable: true), t("pump2", .coil, 1, .bool, writable: true),
        t("high_alarm", .discreteInput, 0, .bool), t("hb_lost", .discreteInput, 1, .bool),
        t("not_writable", .holdingRegister, 50, .int16),
    ]
}
