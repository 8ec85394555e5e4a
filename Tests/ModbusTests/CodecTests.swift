import Tags
import Testing

@testable import Modbus

/// Register images below were computed with Python's `struct` (big-endian pack, then words reversed for CDAB/DCBA
/// and bytes swapped in each word for BADC/DCBA), not with the code under test.
struct Vector: Sendable, CustomStringConvertible {
    var type: TagDataType
    var order: WordOrder
    var registers: [UInt16]
    var value: SampleValue
    init(_ type: TagDataType, _ order: WordOrder, _ registers: [UInt16], _ value: SampleValue) {
        self.type = type
        self.order = order
        self.registers = registers
        self.value = value
    }
    var description: String { "\(type) \(order.rawValue)" }
}

let vectors: [Vector] = [
    Vector(.int16, .abcd, [0xCFC7], .int(-12345)),
    Vector(.int16, .badc, [0xC7CF], .int(-12345)),
    Vector(.int16, .cdab, [0xCFC7], .int(-12345)),
    Vector(.int16, .dcba, [0xC7CF], .int(-12345)),
    Vector(.uint16, .abcd, [0xD431], .uint(54321)),
    Vector(.uint16, .badc, [0x31D4], .uint(54321)),
    Vector(.uint16, .cdab, [0xD431], .uint(54321)),
    Vector(.uint16, .dcba, [0x31D4], .uint(54321)),
    Vector(.int32, .abcd, [0xF8A4, 0x32EB], .int(-123_456_789)),
    Vector(.int32, .badc, [0xA4F8, 0xEB32], .int(-123_456_789)),
    Vector(.int32, .cdab, [0x32EB, 0xF8A4], .int(-123_456_789)),
    Vector(.int32, .dcba, [0xEB32, 0xA4F8], .int(-123_456_789)),
    Vector(.uint32, .abcd, [0xB2D0, 0x5E00], .uint(3_000_000_000)),
    Vector(.uint32, .badc, [0xD0B2, 0x005E], .uint(3_000_000_000)),
    Vector(.uint32, .cdab, [0x5E00, 0xB2D0], .uint(3_000_000_000)),
    Vector(.uint32, .dcba, [0x005E, 0xD0B2], .uint(3_000_000_000)),
    Vector(.int64, .abcd, [0xEEDD, 0xEF0B, 0x8216, 0x7EEB], .int(-1_234_567_890_123_456_789)),
    Vector(.int64, .badc, [0xDDEE, 0x0BEF, 0x1682, 0xEB7E], .int(-1_234_567_890_123_456_789)),
    Vector(.int64, .cdab, [0x7EEB, 0x8216, 0xEF0B, 0xEEDD], .int(-1_234_567_890_123_456_789)),
    Vector(.int64, .dcba, [0xEB7E, 0x1682, 0x0BEF, 0xDDEE], .int(-1_234_567_890_123_456_789)),
    Vector(.uint64, .abcd, [0xF9CC, 0xD8A1, 0xC508, 0x0000], .uint(18_000_000_000_000_000_000)),
    Vector(.uint64, .badc, [0xCCF9, 0xA1D8, 0x08C5, 0x0000], .uint(18_000_000_000_000_000_000)),
    Vector(.uint64, .cdab, [0x0000, 0xC508, 0xD8A1, 0xF9CC], .uint(18_000_000_000_000_000_000)),
    Vector(.uint64, .dcba, [0x0000, 0x08C5, 0xA1D8, 0xCCF9], .uint(18_000_000_000_000_000_000)),
    Vector(.float32, .abcd, [0xC0E8, 0x0000], .double(-7.25)),
    Vector(.float32, .badc, [0xE8C0, 0x0000], .double(-7.25)),
    Vector(.float32, .cdab, [0x0000, 0xC0E8], .double(-7.25)),
    Vector(.float32, .dcba, [0x0000, 0xE8C0], .double(-7.25)),
    Vector(.float64, .abcd, [0x4009, 0x21FB, 0x5444, 0x2D11], .double(3.14159265358979)),
    Vector(.float64, .badc, [0x0940, 0xFB21, 0x4454, 0x112D], .double(3.14159265358979)),
    Vector(.float64, .cdab, [0x2D11, 0x5444, 0x21FB, 0x4009], .double(3.14159265358979)),
    Vector(.float64, .dcba, [0x112D, 0x4454, 0xFB21, 0x0940], .double(3.14159265358979)),
]

func decode(_ registers: [UInt16], _ type: TagDataType, _ order: WordOrder, _ scaling: Scaling? = nil) -> (
    SampleValue?, String
) {
    var text = [UInt8](repeating: 0, count: 256)
    let value = registers.withUnsafeBufferPointer { r in
        text.withUnsafeMutableBytes { t in
            RegisterCodec.decode(registers: r.baseAddress!, type: type, order: order, scaling: scaling, text: t)
        }
    }
    if case .text(let n) = value { return (value, String(decoding: text.prefix(n), as: UTF8.self)) }
    return (value, "")
}

func encode(_ value: TagValue, _ type: TagDataType, _ order: WordOrder, _ scaling: Scaling? = nil) throws(WriteRefusal)
    -> [UInt16]
{
    var words = [UInt16](repeating: 0xFFFF, count: type.registerCount)
    try words.withUnsafeMutableBufferPointer { (b) throws(WriteRefusal) in
        try RegisterCodec.encode(value, type: type, order: order, scaling: scaling, into: b)
    }
    return words
}

func tagValue(_ s: SampleValue) -> TagValue {
    switch s {
    case .bool(let b): return .bool(b)
    case .int(let i): return .int(i)
    case .uint(let u): return .uint(u)
    case .double(let d): return .double(d)
    default: return .string("?")
    }
}

@Suite struct CodecTests {
    @Test(arguments: vectors)
    func decodesKnownRegisterImages(_ v: Vector) {
        #expect(decode(v.registers, v.type, v.order).0 == v.value)
    }

    @Test(arguments: vectors)
    func encodesToKnownRegisterImages(_ v: Vector) throws {
        #expect(try encode(tagValue(v.value), v.type, v.order) == v.registers)
    }

    @Test func sixtyFourBitCDABReversesAllFourWords() {
        // 0x0102030405060708 with the least significant word first, bytes big-endian in each word.
        let (value, _) = decode([0x0708, 0x0506, 0x0304, 0x0102], .uint64, .cdab)
        #expect(value == .uint(0x0102_0304_0506_0708))
    }

    @Test func simulatorTypedBlockDecodes() {
        // Literal holding registers 30…51 of Simulators/quadtank_sim.py (typed_block()), from Python's struct.
        let block: [UInt16] = [
            0xFFFE, 0x1DC0, 0xB2D0, 0x5E00, 0xFFFF, 0xFEE0, 0x8E04, 0xFB35, 0x4009, 0x21FB, 0x5444, 0x2D11, 0x4841,
            0x0000, 0x0000, 0xE8C0, 0x4550, 0x2D44, 0x454D, 0x4F31, 0xFFD6, 0xFDE8,
        ]
        func at(_ a: Int, _ t: TagDataType, _ o: WordOrder = .abcd) -> (SampleValue?, String) {
            decode(Array(block[(a - 30)...]), t, o)
        }
        #expect(at(30, .int32).0 == .int(-123_456))
        #expect(at(32, .uint32).0 == .uint(3_000_000_000))
        #expect(at(34, .int64).0 == .int(-1_234_567_890_123))
        #expect(at(38, .float64).0 == .double(3.14159265358979))
        #expect(at(42, .float32, .badc).0 == .double(12.5))
        #expect(at(44, .float32, .dcba).0 == .double(-7.25))
        #expect(at(46, .string(registers: 4)).1 == "EP-DEMO1")
        #expect(at(50, .int16).0 == .int(-42))
        #expect(at(51, .uint16).0 == .uint(65000))
    }

    @Test func stringsHighByteFirstAndPadding() throws {
        // "AB", "C\0", "\0\0": NUL padded, 6-char capacity.
        let (v, s) = decode([0x4142, 0x4300, 0x0000], .string(registers: 3), .abcd)
        #expect(v == .text(length: 3))
        #expect(s == "ABC")
        // Byte-swapped orders put the low byte first.
        #expect(decode([0x4241, 0x0043], .string(registers: 2), .badc).1 == "ABC")
        #expect(decode([0x4241, 0x0043], .string(registers: 2), .dcba).1 == "ABC")
        // Word order never reorders text registers.
        #expect(decode([0x4142, 0x4344], .string(registers: 2), .cdab).1 == "ABCD")
        // Trailing spaces are padding.
        #expect(decode([0x4F4B, 0x2020], .string(registers: 2), .abcd).1 == "OK")
        // Non-ASCII is a decode error, not garbage text.
        #expect(decode([0x41C3, 0xA900], .string(registers: 2), .abcd).0 == nil)
        #expect(try encode(.string("ABC"), .string(registers: 3), .abcd) == [0x4142, 0x4300, 0x0000])
        #expect(try encode(.string("ABC"), .string(registers: 2), .badc) == [0x4241, 0x0043])
        #expect(throws: WriteRefusal.tooLong("ABCDE", capacity: 4)) {
            try encode(.string("ABCDE"), .string(registers: 2), .abcd)
        }
        #expect(throws: WriteRefusal.notASCII("é")) { try encode(.string("é"), .string(registers: 2), .abcd) }
    }

    @Test func boolInRegisterAndBitAreas() throws {
        #expect(decode([0x0000], .bool, .abcd).0 == .bool(false))
        #expect(decode([0x0100], .bool, .abcd).0 == .bool(true))
        #expect(RegisterCodec.decodeBit(1) == .bool(true))
        #expect(RegisterCodec.decodeBit(0) == .bool(false))
        #expect(try RegisterCodec.encodeBool(.int(1)) == true)
        #expect(try RegisterCodec.encodeBool(.bool(false)) == false)
        #expect(throws: WriteRefusal.self) { try RegisterCodec.encodeBool(.int(2)) }
        #expect(throws: WriteRefusal.self) { try RegisterCodec.encodeBool(.string("true")) }
        #expect(try encode(.bool(true), .bool, .abcd) == [0x0001])
    }

    @Test func scalingDecodesToEngineeringUnits() {
        // int16 ×100: raw -1234 → -12.34; 0…27648 → 0…100 %.
        let centi = Scaling(rawLow: 0, rawHigh: 100, engineeringLow: 0, engineeringHigh: 1)
        #expect(decode([0xFB2E], .int16, .abcd, centi).0 == .double(-12.34))
        let percent = Scaling(rawLow: 0, rawHigh: 27648, engineeringLow: 0, engineeringHigh: 100)
        #expect(decode([0x3600], .uint16, .abcd, percent).0 == .double(50))
        // Scaling that manufactures infinity is a decode error.
        let broken = Scaling(rawLow: 0, rawHigh: 0, engineeringLow: 0, engineeringHigh: 1)
        #expect(decode([0x0001], .int16, .abcd, broken).0 == nil)
    }

    @Test func inverseScalingRoundsHalfAwayFromZero() throws {
        let centi = Scaling(rawLow: 0, rawHigh: 100, engineeringLow: 0, engineeringHigh: 1)
        #expect(try encode(.double(4.5), .int16, .abcd, centi) == [450])
        #expect(try encode(.double(-12.34), .int16, .abcd, centi) == [0xFB2E])
        // 0.125 → 12.5 raw → 13; -0.125 → -13 (ties away from zero).
        #expect(try encode(.double(0.125), .int16, .abcd, centi) == [13])
        #expect(try encode(.double(-0.125), .int16, .abcd, centi) == [UInt16(bitPattern: -13)])
        // 327.67 fits int16 ×100; 327.68 does not.
        #expect(try encode(.double(327.67), .int16, .abcd, centi) == [32767])
        #expect(throws: WriteRefusal.self) { try encode(.double(327.68), .int16, .abcd, centi) }
        #expect(throws: WriteRefusal.self) { try encode(.double(-0.01), .uint16, .abcd, centi) }
    }

    @Test func rangeAndTypeChecks() throws {
        #expect(throws: WriteRefusal.outOfRange(value: "40000", type: .int16)) {
            try encode(.int(40000), .int16, .abcd)
        }
        #expect(throws: WriteRefusal.outOfRange(value: "-1", type: .uint32)) { try encode(.int(-1), .uint32, .abcd) }
        #expect(throws: WriteRefusal.self) { try encode(.double(1.5), .int32, .abcd) }
        #expect(throws: WriteRefusal.self) { try encode(.double(.nan), .float32, .abcd) }
        #expect(throws: WriteRefusal.self) { try encode(.double(1e39), .float32, .abcd) }
        #expect(throws: WriteRefusal.self) { try encode(.string("1"), .float32, .abcd) }
        #expect(throws: WriteRefusal.self) { try encode(.bool(true), .int16, .abcd) }
        #expect(throws: WriteRefusal.self) { try encode(.double(9.3e18), .int64, .abcd) }
        #expect(try encode(.uint(UInt64(Int64.max)), .int64, .abcd) == [0x7FFF, 0xFFFF, 0xFFFF, 0xFFFF])
        #expect(try encode(.double(65535), .uint16, .abcd) == [0xFFFF])
        #expect(try encode(.int(-32768), .int16, .abcd) == [0x8000])
        #expect(try encode(.double(12.5), .float32, .badc) == [0x4841, 0x0000])
    }

    @Test(arguments: WordOrder.allCases)
    func roundTripsEveryNumericType(_ order: WordOrder) throws {
        let samples: [(TagDataType, TagValue)] = [
            (.int16, .int(-2)), (.uint16, .uint(7)), (.int32, .int(Int64(Int32.min))), (.uint32, .uint(0xDEAD_BEEF)),
            (.int64, .int(Int64.min)), (.uint64, .uint(UInt64.max)), (.float32, .double(0.1)),
            (.float64, .double(-1e300)),
        ]
        for (type, value) in samples {
            let words = try encode(value, type, order)
            let back = decode(words, type, order).0
            if type == .float32 {
                #expect(back == .double(Double(Float(0.1))))
            } else {
                #expect(back.map(tagValue) == value, "\(type) \(order)")
            }
        }
    }
}
