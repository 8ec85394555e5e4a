import Synchronization

/// The current value, quality and source timestamp of every tag, shared by the drivers that write it and the
/// consumers that read it.
///
/// Each tag has exactly one writer (its device's poller thread). Readers never block that writer: every slot is a
/// sequence lock over a few 64-bit atomic words, so a reader that races a write simply reads again. All storage is
/// allocated when the table is built; `update` and `read` allocate nothing, which keeps the poll path fixed-memory.
///
/// Report by exception: `update` compares the new sample with the last one it reported for that tag and, when the
/// value moved by more than the tag's deadband or the quality changed, pushes a `TagChange` to the `ChangeFeed`.
public final class TagTable: @unchecked Sendable {
    /// The tags, in index order; a tag's index is its position here.
    public let definitions: [TagDefinition]
    /// The feed every reported change goes to.
    public let changes: ChangeFeed
    /// The id of tag 0 in `TagChange.tag`; tag `i` reports as `idBase + i`.
    ///
    /// Each device gets a table of its own so a reload can replace one device's table without touching the others;
    /// distinct bases keep the ids in a shared `ChangeFeed` apart (see `TagDirectory`).
    public let idBase: Int32

    private let indexByName: [String: Int]
    private let words: UnsafeMutablePointer<Atomic<UInt64>>
    private let wordCount: Int
    private let slotOffset: [Int]
    private let deadbands: [Double]
    // Owned by each tag's single writer; readers never touch these.
    private let lastReported: UnsafeMutablePointer<TagSample>
    private let lastReportedText: UnsafeMutablePointer<UInt64>
    private let textOffset: [Int]
    // When each tag's driver last confirmed that the slot holds the device's current value (Unix µs).
    private let confirmed: UnsafeMutablePointer<Atomic<Int64>>

    private static let headerWords = 4  // sequence, value bits, meta (kind, quality, text length), timestamp

    public init(definitions: [TagDefinition], changes: ChangeFeed = ChangeFeed(consumers: 0), idBase: Int32 = 0) {
        self.definitions = definitions
        self.changes = changes
        self.idBase = idBase
        var index: [String: Int] = [:]
        var offsets: [Int] = []
        var textOffsets: [Int] = []
        var next = 0
        var nextText = 0
        for (i, d) in definitions.enumerated() {
            index[d.name] = i
            offsets.append(next)
            textOffsets.append(nextText)
            let textWords = (d.type.textCapacity + 7) / 8
            next += Self.headerWords + textWords
            nextText += textWords
        }
        indexByName = index
        slotOffset = offsets
        textOffset = textOffsets
        wordCount = next
        deadbands = definitions.map { max(0, $0.deadband) }
        words = .allocate(capacity: max(next, 1))
        for i in 0..<next { (words + i).initialize(to: Atomic<UInt64>(0)) }
        lastReported = .allocate(capacity: max(definitions.count, 1))
        lastReported.initialize(repeating: .initial, count: max(definitions.count, 1))
        lastReportedText = .allocate(capacity: max(nextText, 1))
        lastReportedText.initialize(repeating: 0, count: max(nextText, 1))
        confirmed = .allocate(capacity: max(definitions.count, 1))
        for i in 0..<max(definitions.count, 1) { (confirmed + i).initialize(to: Atomic<Int64>(0)) }
        for i in 0..<definitions.count { store(i, .initial, text: nil) }
    }

    deinit {
        words.deinitialize(count: wordCount)
        words.deallocate()
        lastReported.deallocate()
        lastReportedText.deallocate()
        confirmed.deinitialize(count: max(definitions.count, 1))
        confirmed.deallocate()
    }

    public var count: Int { definitions.count }

    public func index(of name: String) -> Int? { indexByName[name] }

    /// Writes a new sample for tag `index` and reports it to the change feed if it is an exception.
    ///
    /// For text tags pass the bytes in `text` (at most the tag's capacity; longer input is cut). Must only be called
    /// from the tag's single writer. Returns whether the sample was reported.
    @discardableResult
    public func update(_ index: Int, _ sample: TagSample, text: UnsafeRawBufferPointer? = nil) -> Bool {
        store(index, sample, text: text)
        guard isException(index, sample, text: text) else { return false }
        lastReported[index] = sample
        if let text, case .text(let length) = sample.value {
            copyText(from: text, length: length, into: lastReportedText + textOffset[index])
            reportText(index, sample)
        } else {
            changes.publish(TagChange(tag: idBase + Int32(index), sample: sample))
        }
        return true
    }

    /// Sets the quality of a tag while keeping its last value, e.g. when its device disconnects.
    ///
    /// Consumers must not mistake an old value for a live one, so the value is kept only for display and the change
    /// is always reported.
    public func markQuality(_ index: Int, _ quality: Quality, timestamp: Int64) {
        var sample = read(index)
        guard sample.quality != quality else { return }
        sample.quality = quality
        sample.timestamp = timestamp
        store(index, sample, text: nil, keepText: true)
        lastReported[index] = sample
        if case .text = sample.value {
            reportText(index, sample)
        } else {
            changes.publish(TagChange(tag: idBase + Int32(index), sample: sample))
        }
    }

    /// Publishes a text tag's change with the text last reported (what the change says), clamped to its capacity.
    private func reportText(_ index: Int, _ sample: TagSample) {
        guard case .text(let length) = sample.value else { return }
        let n = min(length, definitions[index].type.textCapacity)
        var change = TagChange(tag: idBase + Int32(index), sample: sample)
        change.sample.value = .text(length: n)
        changes.publish(change, text: UnsafeRawPointer(lastReportedText + textOffset[index]), length: n)
    }

    /// Records that the device still held the tag's value at `time` (Unix µs), without a new sample.
    ///
    /// A sample's timestamp says when the value changed at its source (an OPC UA server keeps the time of the last
    /// write), not whether the agent still knows it: a setpoint untouched for an hour is as current as one read a
    /// moment ago when a poll reply or a live subscription vouches for it. Consumers that need freshness (the
    /// loops' input age) use `confirmedAt`. Must only be called from the tag's single writer.
    public func confirm(_ index: Int, at time: Int64) {
        confirmed[index].store(time, ordering: .relaxed)
    }

    /// The latest time (Unix µs) at which the tag's driver knew the table held the device's current value: the
    /// sample's own timestamp, or a later confirmation.
    public func confirmedAt(_ index: Int) -> Int64 {
        max(confirmed[index].load(ordering: .relaxed), read(index).timestamp)
    }

    /// The current sample of tag `index`; never blocks the writer.
    public func read(_ index: Int) -> TagSample {
        let base = words + slotOffset[index]
        while true {
            let s1 = base[0].load(ordering: .acquiring)
            if s1 & 1 == 1 { continue }
            let valueBits = base[1].load(ordering: .relaxed)
            let meta = base[2].load(ordering: .relaxed)
            let timestamp = Int64(bitPattern: base[3].load(ordering: .relaxed))
            atomicMemoryFence(ordering: .acquiring)
            if base[0].load(ordering: .relaxed) == s1 {
                return Self.decode(valueBits: valueBits, meta: meta, timestamp: timestamp)
            }
        }
    }

    /// The current text of a text tag (empty for other types); consistent with the sample read at the same time.
    public func text(of index: Int) -> String {
        let capacity = definitions[index].type.textCapacity
        guard capacity > 0 else { return "" }
        let base = words + slotOffset[index]
        let textWords = (capacity + 7) / 8
        var buffer = [UInt64](repeating: 0, count: textWords)
        var length = 0
        while true {
            let s1 = base[0].load(ordering: .acquiring)
            if s1 & 1 == 1 { continue }
            let meta = base[2].load(ordering: .relaxed)
            for w in 0..<textWords { buffer[w] = base[Self.headerWords + w].load(ordering: .relaxed) }
            atomicMemoryFence(ordering: .acquiring)
            if base[0].load(ordering: .relaxed) == s1 {
                length = Int((meta >> 16) & 0xFFFF)
                break
            }
        }
        return buffer.withUnsafeBytes { raw in
            let bytes = raw.prefix(min(length, capacity)).prefix { $0 != 0 }
            return String(decoding: bytes, as: UTF8.self)
        }
    }

    /// The value of a sample as users see it, resolving text from the slot.
    public func value(of index: Int, _ sample: TagSample) -> TagValue? {
        switch sample.value {
        case .none: return nil
        case .bool(let b): return .bool(b)
        case .int(let i): return .int(i)
        case .uint(let u): return .uint(u)
        case .double(let d): return .double(d)
        case .text: return .string(text(of: index))
        }
    }

    // MARK: - Private

    private func isException(_ index: Int, _ sample: TagSample, text: UnsafeRawBufferPointer?) -> Bool {
        let last = lastReported[index]
        if last.quality != sample.quality { return true }
        switch (last.value, sample.value) {
        case (.double(let a), .double(let b)):
            return !(abs(a - b) <= deadbands[index]) || (a.isNaN != b.isNaN)
        case (.int(let a), .int(let b)):
            return a != b && Double(a.subtractingReportingOverflow(b).partialValue.magnitude) > deadbands[index]
        case (.uint(let a), .uint(let b)):
            return a != b && Double(a > b ? a - b : b - a) > deadbands[index]
        case (.text(let la), .text(let lb)):
            guard la == lb, let text else { return true }
            return !textEquals(text, length: lb, lastReportedText + textOffset[index])
        default:
            return last.value != sample.value
        }
    }

    private func textEquals(_ text: UnsafeRawBufferPointer, length: Int, _ stored: UnsafeMutablePointer<UInt64>) -> Bool
    {
        let storedBytes = UnsafeRawPointer(stored)
        for i in 0..<min(length, text.count) where text[i] != storedBytes.load(fromByteOffset: i, as: UInt8.self) {
            return false
        }
        return true
    }

    private func copyText(
        from text: UnsafeRawBufferPointer, length: Int, into destination: UnsafeMutablePointer<UInt64>
    ) {
        let raw = UnsafeMutableRawPointer(destination)
        for i in 0..<min(length, text.count) { raw.storeBytes(of: text[i], toByteOffset: i, as: UInt8.self) }
    }

    private func store(_ index: Int, _ sample: TagSample, text: UnsafeRawBufferPointer?, keepText: Bool = false) {
        let base = words + slotOffset[index]
        let capacity = definitions[index].type.textCapacity
        var sample = sample
        if case .text(let length) = sample.value { sample.value = .text(length: min(length, capacity)) }
        let (valueBits, meta) = Self.encode(sample)
        let seq = base[0].load(ordering: .relaxed)
        base[0].store(seq &+ 1, ordering: .relaxed)
        atomicMemoryFence(ordering: .releasing)
        base[1].store(valueBits, ordering: .relaxed)
        if keepText {
            let keptLength = base[2].load(ordering: .relaxed) & 0xFFFF_0000
            base[2].store((meta & ~0xFFFF_0000) | keptLength, ordering: .relaxed)
        } else {
            base[2].store(meta, ordering: .relaxed)
        }
        base[3].store(UInt64(bitPattern: sample.timestamp), ordering: .relaxed)
        if capacity > 0, let text {
            let n = min(text.count, capacity)
            var w = 0
            while w * 8 < capacity {
                var word: UInt64 = 0
                for b in 0..<8 where w * 8 + b < n { word |= UInt64(text[w * 8 + b]) << (8 * UInt64(b)) }
                base[Self.headerWords + w].store(word, ordering: .relaxed)
                w += 1
            }
        }
        base[0].store(seq &+ 2, ordering: .releasing)
    }

    // meta layout: bits 0–7 value kind, 8–15 quality code, 16–31 text length, 32–63 quality detail.
    private static func encode(_ sample: TagSample) -> (UInt64, UInt64) {
        let kind: UInt64
        let bits: UInt64
        var length: UInt64 = 0
        switch sample.value {
        case .none: (kind, bits) = (0, 0)
        case .bool(let b): (kind, bits) = (1, b ? 1 : 0)
        case .int(let i): (kind, bits) = (2, UInt64(bitPattern: i))
        case .uint(let u): (kind, bits) = (3, u)
        case .double(let d): (kind, bits) = (4, d.bitPattern)
        case .text(let n):
            (kind, bits) = (5, 0)
            length = UInt64(n & 0xFFFF)
        }
        let meta = kind | UInt64(sample.quality.code.rawValue) << 8 | length << 16 | UInt64(sample.quality.detail) << 32
        return (bits, meta)
    }

    private static func decode(valueBits: UInt64, meta: UInt64, timestamp: Int64) -> TagSample {
        let value: SampleValue
        switch meta & 0xFF {
        case 1: value = .bool(valueBits != 0)
        case 2: value = .int(Int64(bitPattern: valueBits))
        case 3: value = .uint(valueBits)
        case 4: value = .double(Double(bitPattern: valueBits))
        case 5: value = .text(length: Int((meta >> 16) & 0xFFFF))
        default: value = .none
        }
        let code = Quality.Code(rawValue: UInt8((meta >> 8) & 0xFF)) ?? .decodeError
        return TagSample(value: value, quality: Quality(code, detail: UInt32(meta >> 32)), timestamp: timestamp)
    }
}
