import Tags
import Testing

@testable import Modbus

private func device(maxGap: Int = 16, registers: Int = 125, bits: Int = 2000) -> DeviceDefinition {
    DeviceDefinition(
        name: "plc", transport: .modbusTCP(host: "127.0.0.1", port: 502), maxGap: maxGap,
        maxRegistersPerRequest: registers, maxBitsPerRequest: bits)
}

private func tag(_ name: String, _ area: ModbusArea, _ address: Int, _ type: TagDataType = .uint16)
    -> TagDefinition
{
    TagDefinition(name: name, device: "plc", source: .modbus(area: area, address: address), type: type)
}

private func plan(_ tags: [TagDefinition], _ d: DeviceDefinition) throws -> ReadPlan {
    try ReadPlan(device: d, tags: tags.enumerated().map { ($0.offset, $0.element) })
}

private func spans(_ p: ReadPlan) -> [String] {
    p.requests.map { "\($0.area.rawValue)@\($0.start)+\($0.count)" }
}

@Suite struct PlanTests {
    @Test func aRefusedRequestIsSplitAtItsGapsThenPerTag() throws {
        let tags = [
            tag("x", .coil, 0, .bool), tag("a", .holdingRegister, 0, .float32), tag("b", .holdingRegister, 2),
            tag("c", .holdingRegister, 10), tag("d", .holdingRegister, 11, .float32), tag("e", .holdingRegister, 40),
        ]
        let p = try plan(tags, device(maxGap: 16))
        #expect(spans(p) == ["coil@0+1", "holding_register@0+13", "holding_register@40+1"])
        let byGaps = try #require(p.splitting(request: 1))
        #expect(
            spans(byGaps) == ["coil@0+1", "holding_register@0+3", "holding_register@10+3", "holding_register@40+1"])
        #expect(byGaps.entries.map(\.request) == [0, 1, 1, 2, 2, 3])
        #expect(byGaps.entries.map(\.offset) == [0, 0, 2, 0, 1, 0])
        #expect(byGaps.requests.map(\.entryRange) == [0..<1, 1..<3, 3..<5, 5..<6])
        #expect(byGaps.entries.map(\.tag) == p.entries.map(\.tag))
        // A request without gaps is split per tag; a request of one tag cannot be split.
        let perTag = try #require(byGaps.splitting(request: 2))
        #expect(spans(perTag).suffix(3) == ["holding_register@10+1", "holding_register@11+2", "holding_register@40+1"])
        #expect(perTag.entries.map(\.offset) == [0, 0, 2, 0, 0, 0])
        #expect(perTag.splitting(request: 3) == nil)
        #expect(perTag.splitting(request: 0) == nil)
    }

    @Test func coalescesAcrossSmallGapsOnly() throws {
        let tags = [
            tag("a", .holdingRegister, 0), tag("b", .holdingRegister, 5, .float32), tag("c", .holdingRegister, 24),
            tag("d", .holdingRegister, 40),
        ]
        // Gap 5→7 to 24 is 17 > 16: new request; 25 → 40 is 15: same request.
        let p = try plan(tags, device(maxGap: 16))
        #expect(spans(p) == ["holding_register@0+7", "holding_register@24+17"])
        #expect(p.entries.map(\.offset) == [0, 5, 0, 16])
        #expect(p.entries.map(\.request) == [0, 0, 1, 1])
        #expect(p.minimumRequestCount == 1)
        // Gap 0 splits at every hole.
        #expect(try plan(tags, device(maxGap: 0)).requests.count == 4)
        // A large gap merges everything.
        #expect(try plan(tags, device(maxGap: 100)).requests.count == 1)
    }

    @Test func respectsRegisterLimitAndKeepsValuesWhole() throws {
        // 100 float32 tags back to back = 200 registers → 125 limit → requests of 124 (62 floats) and 76.
        let tags = (0..<100).map { tag("f\($0)", .inputRegister, 2 * $0, .float32) }
        let p = try plan(tags, device())
        #expect(spans(p) == ["input_register@0+124", "input_register@124+76"])
        #expect(p.minimumRequestCount == 2)
        for e in p.entries {
            #expect(e.offset + 2 <= p.requests[e.request].count)
        }
    }

    @Test func stringNeverStraddlesTheLimit() throws {
        // Registers 0…119 used, then a 10-register string at 120: 130 > 125, so the string starts a new request.
        let tags = [
            tag("block", .holdingRegister, 0, .string(registers: 120)),
            tag("s", .holdingRegister, 120, .string(registers: 10)),
        ]
        let p = try plan(tags, device())
        #expect(spans(p) == ["holding_register@0+120", "holding_register@120+10"])
        // A string longer than the device's limit is a configuration error with the tag's name.
        #expect(throws: ReadPlanError.self) {
            try plan([tag("long", .holdingRegister, 0, .string(registers: 30))], device(registers: 20))
        }
    }

    @Test func keepsAreasApartAndBitsUseTheBitLimit() throws {
        var tags: [TagDefinition] = []
        tags += (0..<3000).map { tag("c\($0)", .coil, $0, .bool) }
        tags.append(tag("di", .discreteInput, 0, .bool))
        tags.append(tag("ir", .inputRegister, 0))
        tags.append(tag("hr", .holdingRegister, 0))
        let p = try plan(tags.shuffled(), device())
        #expect(
            Set(spans(p)) == [
                "coil@0+2000", "coil@2000+1000", "discrete_input@0+1", "input_register@0+1", "holding_register@0+1",
            ])
        #expect(p.requests.map(\.functionCode).sorted() == [1, 1, 2, 3, 4])
        // Every tag appears exactly once and entries point into their own request's range.
        #expect(Set(p.entries.map(\.tag)).count == tags.count)
        for (i, r) in p.requests.enumerated() {
            for e in p.entries[r.entryRange] { #expect(e.request == i) }
        }
    }

    @Test func overlappingTagsShareARequest() throws {
        let tags = [tag("word", .holdingRegister, 10), tag("float", .holdingRegister, 10, .float32)]
        let p = try plan(tags, device(maxGap: 0))
        #expect(spans(p) == ["holding_register@10+2"])
    }

    @Test func rejectsImpossibleTags() {
        #expect(throws: ReadPlanError.self) { try plan([tag("x", .coil, 0, .int16)], device()) }
        #expect(throws: ReadPlanError.self) { try plan([tag("x", .holdingRegister, 65_535, .float32)], device()) }
        let opc = TagDefinition(name: "o", device: "plc", source: .opcua(node: "ns=1;s=x"), type: .float32)
        #expect(throws: ReadPlanError.self) { try plan([opc], device()) }
    }

    @Test func minimumCountIgnoresTheGapButNotTheLimit() throws {
        // Tags every 50 registers over 0…1000: maxGap 16 reads each alone; the minimum packs up to 125 registers.
        let tags = (0...20).map { tag("t\($0)", .holdingRegister, 50 * $0) }
        let p = try plan(tags, device(maxGap: 16))
        #expect(p.requests.count == 21)
        // Spans 0–100, 150–250, … : three tags per 101-register span → 7 requests.
        #expect(p.minimumRequestCount == 7)
    }
}
