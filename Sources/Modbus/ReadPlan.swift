import Tags

/// One coalesced Modbus read: a contiguous range of one area.
public struct ReadRequest: Sendable, Hashable {
    public var area: ModbusArea
    public var start: Int
    /// Registers (register areas) or bits (bit areas).
    public var count: Int
    /// The plan's entries this request feeds: `entries[entryRange]`.
    public var entryRange: Range<Int>

    package init(area: ModbusArea, start: Int, count: Int, entryRange: Range<Int>) {
        self.area = area
        self.start = start
        self.count = count
        self.entryRange = entryRange
    }

    /// The Modbus function code that performs this read (1–4).
    public var functionCode: UInt8 {
        switch area {
        case .coil: return 1
        case .discreteInput: return 2
        case .holdingRegister: return 3
        case .inputRegister: return 4
        }
    }
}

/// Where one tag's value sits in the responses of a plan, with what the poll path needs to decode it.
///
/// Holds no references, so iterating entries on the poll path never touches a reference count.
public struct PlanEntry: Sendable, Hashable {
    /// The tag's index in the `TagTable`.
    public var tag: Int
    public var request: Int
    /// Offset of the tag's first register (or its bit) inside the request's response.
    public var offset: Int
    public var type: TagDataType
    public var order: WordOrder
    public var scaling: Scaling?
}

/// A configuration problem that makes a tag impossible to read.
public struct ReadPlanError: Error, Sendable, Equatable, CustomStringConvertible {
    public var tag: String
    public var reason: String
    public var description: String { "tag \(tag): \(reason)" }

    package init(tag: String, reason: String) {
        self.tag = tag
        self.reason = reason
    }
}

/// The reads that cover the tags of one device and poll group in the fewest requests.
///
/// Per area, tags are sorted by address and packed greedily: a request grows to take the next tag while the whole
/// span stays within the device's per-request maximum and the unused addresses between the two stay within
/// `maxGap`. For sorted intervals with a span limit, greedy packing is optimal, so no plan with the same limits
/// needs fewer requests. `minimumRequestCount` is the same packing with an unlimited gap — the fewest requests the
/// size limits alone allow — which benchmarks compare against.
public struct ReadPlan: Sendable {
    public private(set) var requests: [ReadRequest] = []
    /// All entries, grouped by request (in request order).
    public private(set) var entries: [PlanEntry] = []
    /// The fewest requests that could cover these tags if any gap could be read through.
    public private(set) var minimumRequestCount = 0

    /// Plans reads for `tags` (index in the tag table, definition); every tag must be a Modbus tag of `device`.
    public init(device: DeviceDefinition, tags: [(index: Int, definition: TagDefinition)]) throws(ReadPlanError) {
        var byArea: [ModbusArea: [(index: Int, definition: TagDefinition, address: Int, length: Int)]] = [:]
        for (index, d) in tags {
            guard case .modbus(let area, let address) = d.source else {
                throw ReadPlanError(tag: d.name, reason: "is not a Modbus tag")
            }
            let length: Int
            if area.isBitArea {
                guard d.type == .bool else {
                    throw ReadPlanError(
                        tag: d.name, reason: "type \(d.type) cannot live in the \(area.rawValue) area (bits are bool)")
                }
                length = 1
            } else {
                length = d.type.registerCount
            }
            let limit = area.isBitArea ? device.maxBitsPerRequest : device.maxRegistersPerRequest
            guard length <= limit else {
                throw ReadPlanError(
                    tag: d.name, reason: "needs \(length) registers but the device reads at most \(limit) per request")
            }
            guard address >= 0 && address + length <= 65_536 else {
                throw ReadPlanError(tag: d.name, reason: "address \(address) + \(length) is outside 0…65535")
            }
            byArea[area, default: []].append((index, d, address, length))
        }
        for area in ModbusArea.allCases {
            guard var list = byArea[area], !list.isEmpty else { continue }
            list.sort { ($0.address, $0.index) < ($1.address, $1.index) }
            let limit = max(1, area.isBitArea ? device.maxBitsPerRequest : device.maxRegistersPerRequest)
            let spans = Self.pack(list.map { ($0.address, $0.length) }, limit: limit, maxGap: max(0, device.maxGap))
            minimumRequestCount += Self.pack(list.map { ($0.address, $0.length) }, limit: limit, maxGap: Int.max).count
            for span in spans {
                let requestIndex = requests.count
                let first = entries.count
                for k in span.members {
                    let t = list[k]
                    entries.append(
                        PlanEntry(
                            tag: t.index, request: requestIndex, offset: t.address - span.start,
                            type: t.definition.type,
                            order: t.definition.order, scaling: t.definition.type.isNumeric ? t.definition.scaling : nil
                        ))
                }
                requests.append(
                    ReadRequest(
                        area: area, start: span.start, count: span.end - span.start, entryRange: first..<entries.count))
            }
        }
    }

    /// A plan of one request for one tag (the read-back after a write).
    package init(single request: ReadRequest, entry: PlanEntry) {
        requests = [request]
        entries = [entry]
        minimumRequestCount = 1
    }

    /// The plan with request `r` read in smaller pieces, after the device refused it with exception 2 (illegal data
    /// address): many PLCs refuse a read that spans addresses they do not map, even when every tag in it exists.
    ///
    /// First the request is cut at every gap between its tags; a request without gaps is cut into one request per
    /// tag, so one unmapped tag no longer takes its neighbours down. Returns nil when the request holds a single tag
    /// (the refusal is then about that tag's own address). The pieces keep their position in the plan.
    public func splitting(request r: Int) -> ReadPlan? {
        let request = requests[r]
        let members = Array(entries[request.entryRange])
        guard members.count > 1 else { return nil }
        let lengths = members.map { request.area.isBitArea ? 1 : $0.type.registerCount }
        // Entries are sorted by address inside a request.
        var pieces: [Range<Int>] = []
        var first = 0
        var end = members[0].offset + lengths[0]
        for k in 1..<members.count {
            if members[k].offset > end {
                pieces.append(first..<k)
                first = k
            }
            end = max(end, members[k].offset + lengths[k])
        }
        pieces.append(first..<members.count)
        if pieces.count == 1 {
            // No gap to cut at: one request per tag (overlapping tags stay together).
            pieces = []
            first = 0
            end = members[0].offset + lengths[0]
            for k in 1..<members.count {
                if members[k].offset >= end {
                    pieces.append(first..<k)
                    first = k
                }
                end = max(end, members[k].offset + lengths[k])
            }
            pieces.append(first..<members.count)
            guard pieces.count > 1 else { return nil }
        }
        var plan = self
        plan.requests.removeAll(keepingCapacity: true)
        plan.entries.removeAll(keepingCapacity: true)
        for (i, old) in requests.enumerated() {
            if i != r {
                let firstEntry = plan.entries.count
                for var e in entries[old.entryRange] {
                    e.request = plan.requests.count
                    plan.entries.append(e)
                }
                var moved = old
                moved.entryRange = firstEntry..<plan.entries.count
                plan.requests.append(moved)
                continue
            }
            for piece in pieces {
                let startOffset = members[piece.lowerBound].offset
                let endOffset = piece.map { members[$0].offset + lengths[$0] }.max()!
                let firstEntry = plan.entries.count
                for k in piece {
                    var e = members[k]
                    e.request = plan.requests.count
                    e.offset -= startOffset
                    plan.entries.append(e)
                }
                plan.requests.append(
                    ReadRequest(
                        area: request.area, start: request.start + startOffset, count: endOffset - startOffset,
                        entryRange: firstEntry..<plan.entries.count))
            }
        }
        return plan
    }

    /// The largest request, in registers, so pollers can size their buffers.
    public var largestRegisterRequest: Int { requests.filter { !$0.area.isBitArea }.map(\.count).max() ?? 0 }
    /// The largest request, in bits.
    public var largestBitRequest: Int { requests.filter { $0.area.isBitArea }.map(\.count).max() ?? 0 }

    private static func pack(_ items: [(address: Int, length: Int)], limit: Int, maxGap: Int) -> [(
        start: Int, end: Int, members: Range<Int>
    )] {
        var result: [(start: Int, end: Int, members: Range<Int>)] = []
        var start = items[0].address
        var end = items[0].address + items[0].length
        var first = 0
        for k in 1..<items.count {
            let item = items[k]
            let newEnd = max(end, item.address + item.length)
            let gap = item.address - end
            if newEnd - start <= limit && gap <= maxGap {
                end = newEnd
            } else {
                result.append((start, end, first..<k))
                start = item.address
                end = item.address + item.length
                first = k
            }
        }
        result.append((start, end, first..<items.count))
        return result
    }
}
