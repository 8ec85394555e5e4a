// pollbench: polls N simulated devices × M mixed-type tags at a fixed period against Simulators/bench_plant.py and
// prints requests per cycle vs the minimum possible, process CPU% and RSS, allocations per poll cycle on the poller
// threads, and the peer's CPU% measured over the same window. Figures only; nothing here asserts a timing.
import CAllocCounter
import Foundation
import Modbus
import ModbusDriver
import Synchronization
import Tags

struct Options {
    var devices = 10
    var tags = 1000
    var periodMilliseconds = 1000
    var seconds = 30.0
    var warmupSeconds = 3.0
    var root = FileManager.default.currentDirectoryPath
}

func parseOptions() -> Options {
    var o = Options()
    var args = CommandLine.arguments.dropFirst().makeIterator()
    while let a = args.next() {
        func next() -> String {
            guard let v = args.next() else { fatalError("\(a) needs a value") }
            return v
        }
        switch a {
        case "--devices": o.devices = Int(next())!
        case "--tags": o.tags = Int(next())!
        case "--period-ms": o.periodMilliseconds = Int(next())!
        case "--seconds": o.seconds = Double(next())!
        case "--warmup": o.warmupSeconds = Double(next())!
        case "--root": o.root = next()
        default:
            FileHandle.standardError.write(
                "usage: pollbench [--devices N] [--tags M] [--period-ms P] [--seconds S] [--warmup S] [--root REPO]\n"
                    .data(using: .utf8)!)
            exit(2)
        }
    }
    return o
}

/// CPU seconds (user + system) of a process, from /proc/PID/stat.
func cpuSeconds(pid: String) -> Double {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
        let close = stat.lastIndex(of: ")")
    else { return .nan }
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    // After the command: state is field 3, utime 14, stime 15 (1-based) → indices 11 and 12 here.
    let ticks = (Double(fields[11]) ?? 0) + (Double(fields[12]) ?? 0)
    return ticks / Double(sysconf(Int32(_SC_CLK_TCK)))
}

func rssKilobytes() -> Int {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return -1 }
    for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
        return Int(line.split(separator: " ", omittingEmptySubsequences: true)[1]) ?? -1
    }
    return -1
}

/// Mixed types laid over the plant's register block, with a 20-register hole every 200 tags so the plan has
/// gaps larger than `maxGap` to respect (the minimum request count ignores them).
func tagsFor(device: String, count: Int) -> [TagDefinition] {
    let kinds: [(TagDataType, WordOrder, Scaling?)] = [
        (.float32, .abcd, nil), (.uint16, .abcd, nil),
        (.int16, .abcd, Scaling(rawLow: 0, rawHigh: 100, engineeringLow: 0, engineeringHigh: 1)),
        (.int32, .abcd, nil), (.float32, .cdab, nil), (.uint32, .badc, nil), (.int64, .dcba, nil), (.bool, .abcd, nil),
    ]
    var tags: [TagDefinition] = []
    var address = 0
    for i in 0..<count {
        if i > 0 && i % 200 == 0 { address += 20 }
        let (type, order, scaling) = kinds[i % kinds.count]
        tags.append(
            TagDefinition(
                name: "\(device).t\(i)", device: device, source: .modbus(area: .holdingRegister, address: address),
                type: type, order: order, scaling: scaling, pollGroup: "bench"))
        address += type.registerCount
    }
    return tags
}

/// Allocation counts of one poller thread, taken at cycle boundaries by the poller's observer hook.
final class CycleAllocations: @unchecked Sendable {
    var startCount: UInt64 = 0  // only touched by the poller thread
    let allocations = Atomic<UInt64>(0)
    let cycles = Atomic<UInt64>(0)
    let measuring: Atomic<Bool>

    init(measuring: Bool) { self.measuring = Atomic(measuring) }

    func observe(starting: Bool) {
        if starting {
            startCount = ep_alloc_count_thread()
        } else if measuring.load(ordering: .relaxed) {
            allocations.add(ep_alloc_count_thread() - startCount, ordering: .relaxed)
            cycles.add(1, ordering: .relaxed)
        }
    }
}

let options = parseOptions()
let python = options.root + "/.venv/bin/python"
let plant = Process()
plant.executableURL = URL(fileURLWithPath: python)
plant.arguments = [
    options.root + "/Simulators/bench_plant.py", "--devices", String(options.devices), "--tags", String(options.tags),
    "--dtype", "float32",
]
let pipe = Pipe()
plant.standardOutput = pipe
try plant.run()
var line = Data()
while let byte = try pipe.fileHandleForReading.read(upToCount: 1), !byte.isEmpty, byte[0] != 0x0A { line.append(byte) }
guard let ready = try JSONSerialization.jsonObject(with: line) as? [String: Any], let ports = ready["ports"] as? [Int]
else {
    print("bench_plant did not start: \(String(decoding: line, as: UTF8.self))")
    plant.terminate()
    exit(1)
}
let peerPID = String(plant.processIdentifier)

var definitions: [TagDefinition] = []
var devices: [DeviceDefinition] = []
for (d, port) in ports.enumerated() {
    let device = DeviceDefinition(
        name: "dev\(d)", transport: .modbusTCP(host: "127.0.0.1", port: port), timeoutMilliseconds: 1000, retries: 1,
        maxGap: 16)
    devices.append(device)
    definitions += tagsFor(device: device.name, count: options.tags)
}
let feed = ChangeFeed(consumers: 1, capacity: 65_536)
let table = TagTable(definitions: definitions, changes: feed)
let group = PollGroup(name: "bench", periodMilliseconds: options.periodMilliseconds)
let counters = devices.map { _ in CycleAllocations(measuring: false) }
let pollers = try devices.enumerated().map { (i, device) in
    let counter = counters[i]
    return try ModbusPoller(device: device, pollGroups: [group], table: table) { counter.observe(starting: $0) }
}

// A consumer like history/publisher would be: drains the feed every 100 ms so changes do not just overflow.
let consuming = Atomic<Bool>(true)
let drained = Atomic<Int>(0)
let consumer = Thread {
    let buffer = UnsafeMutableBufferPointer<TagChange>.allocate(capacity: 65_536)
    defer { buffer.deallocate() }
    while consuming.load(ordering: .relaxed) {
        drained.add(feed.drain(consumer: 0, into: buffer), ordering: .relaxed)
        Thread.sleep(forTimeInterval: 0.1)
    }
}
consumer.start()

for p in pollers { p.start() }
Thread.sleep(forTimeInterval: options.warmupSeconds)
for c in counters { c.measuring.store(true, ordering: .relaxed) }
let pollsBefore = pollers.map { $0.stats.polls }
let requestsBefore = pollers.map { $0.stats.requests }
let drainedBefore = drained.load(ordering: .relaxed)
let cpuBefore = cpuSeconds(pid: "self")
let peerBefore = cpuSeconds(pid: peerPID)
let wallBefore = Date()
Thread.sleep(forTimeInterval: options.seconds)
let wall = Date().timeIntervalSince(wallBefore)
let cpu = cpuSeconds(pid: "self") - cpuBefore
let peerCPU = cpuSeconds(pid: peerPID) - peerBefore
let rss = rssKilobytes()
let stats = pollers.map(\.stats)
for c in counters { c.measuring.store(false, ordering: .relaxed) }
for p in pollers { p.stop() }
consuming.store(false, ordering: .relaxed)
plant.terminate()
plant.waitUntilExit()

let cycles = zip(stats, pollsBefore).map { $0.polls - $1 }.reduce(0, +)
let requests = zip(stats, requestsBefore).map { $0.requests - $1 }.reduce(0, +)
let planned = pollers.map { $0.plans.first?.requests.count ?? 0 }.reduce(0, +)
let minimum = pollers.map { $0.plans.first?.minimumRequestCount ?? 0 }.reduce(0, +)
let allocations = counters.map { $0.allocations.load(ordering: .relaxed) }.reduce(0, +)
let measuredCycles = counters.map { $0.cycles.load(ordering: .relaxed) }.reduce(0, +)
let good = (0..<table.count).filter { table.read($0).quality.isGood }.count
let expectedCycles = Double(devices.count) * wall * 1000 / Double(options.periodMilliseconds)
func f(_ x: Double, _ digits: Int = 1) -> String { String(format: "%.\(digits)f", x) }

print(
    "pollbench: \(devices.count) devices × \(options.tags) tags (mixed types), period \(options.periodMilliseconds) ms, \(f(wall)) s measured after \(f(options.warmupSeconds)) s warm-up"
)
print(
    "  requests per cycle (all devices): \(planned) planned (maxGap 16) vs \(minimum) minimum possible; sent \(f(Double(requests) / max(1, Double(cycles)) * Double(devices.count), 1)) per all-device cycle incl. retries"
)
print(
    "  poll cycles: \(cycles) of \(f(expectedCycles, 0)) scheduled, overruns \(stats.map(\.overruns).reduce(0, +)), errors \(stats.map(\.errors).reduce(0, +)), tags good \(good)/\(table.count)"
)
print(
    "  cycle duration (last, per device): max \(f(Double(stats.map(\.lastCycleNanoseconds).max() ?? 0) / 1e6, 2)) ms, mean \(f(Double(stats.map(\.lastCycleNanoseconds).reduce(0, +)) / Double(stats.count) / 1e6, 2)) ms"
)
print(
    "  allocations per poll cycle on poller threads: \(f(Double(allocations) / max(1, Double(measuredCycles)), 3)) (\(allocations) in \(measuredCycles) cycles)"
)
print(
    "  changes reported: \(drained.load(ordering: .relaxed) - drainedBefore), dropped by the feed: \(feed.dropped(consumer: 0))"
)
print("  edgepilot pollers: CPU \(f(100 * cpu / wall, 2)) % of one core, RSS \(rss / 1024) MiB (\(rss) kB)")
print(
    "  peer (bench_plant.py, pymodbus): CPU \(f(100 * peerCPU / wall, 2)) % of one core; ratio peer/edgepilot \(f(peerCPU / max(cpu, 1e-9), 1))×"
)
