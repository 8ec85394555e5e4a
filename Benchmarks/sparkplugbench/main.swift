// Sparkplug payload encode throughput (metrics/s) and heap allocations per encoded NDATA.
// Prints one JSON object on stdout; Benchmarks/sparkplug/run.sh puts it beside the Python encoder's figures.
//
// Usage: sparkplugbench [--metrics N] [--seconds S]
//        sparkplugbench --births N [--members M] [--seconds S] [--compression none|deflate|gzip]
//          (NBIRTH/DBIRTH, Births.swift)
// Allocations are counted only when the malloc-counting shim (built by run.sh) is LD_PRELOADed; otherwise null.

import Foundation
import Sparkplug

#if canImport(Glibc)
    import Glibc
#endif

var metricsPerPayload = 10
var seconds = 2.0
var birthMetrics: Int?
var members = 10
// Births only: compressed with the publisher's SparkplugCompressor (sparkplug.compression).
var compression = "none"
var arguments = CommandLine.arguments.dropFirst().makeIterator()
while let arg = arguments.next() {
    switch arg {
    case "--metrics": metricsPerPayload = Int(arguments.next() ?? "") ?? metricsPerPayload
    case "--seconds": seconds = Double(arguments.next() ?? "") ?? seconds
    case "--births": birthMetrics = Int(arguments.next() ?? "")
    case "--members": members = max(1, Int(arguments.next() ?? "") ?? members)
    case "--compression": compression = arguments.next() ?? compression
    default:
        FileHandle.standardError.write(Data("unknown argument \(arg)\n".utf8))
        exit(2)
    }
}

if let birthMetrics {
    let compressor: SparkplugCompressor?
    switch compression {
    case "none": compressor = nil
    case "deflate": compressor = SparkplugCompressor(algorithm: .deflate)
    case "gzip": compressor = SparkplugCompressor(algorithm: .gzip)
    default:
        FileHandle.standardError.write(Data("--compression \(compression): expected none, deflate or gzip\n".utf8))
        exit(2)
    }
    let result = try birthsBenchmark(
        metrics: birthMetrics, members: members, seconds: seconds, compressor: compressor)
    let json = try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys])
    print(String(decoding: json, as: UTF8.self))
    exit(0)
}

/// The counter exported by Benchmarks/sparkplug/malloc_count.c when preloaded.
let mallocCount: (@convention(c) () -> UInt64)? = {
    // The main program's handle searches the global scope, which includes LD_PRELOADed libraries.
    guard let sym = dlsym(dlopen(nil, RTLD_NOW), "edgepilot_malloc_count") else { return nil }
    return unsafeBitCast(sym, to: (@convention(c) () -> UInt64).self)
}()

/// A typical NDATA: a mix of Double, Float, Int32 and Boolean tags with aliases and timestamps, as a poll cycle
/// produces (the same shape as the Python encoder's in encode_bench.py).
@inline(never)
func ndata(_ i: Int, seq: UInt64, count metricsPerPayload: Int) -> SparkplugPayload {
    let ts = 1_700_000_000_000 + UInt64(i)
    var metrics: [SparkplugMetric] = []
    metrics.reserveCapacity(metricsPerPayload)
    for k in 0..<metricsPerPayload {
        let value: SparkplugValue
        switch k % 4 {
        case 0: value = .double(Double(i) * 0.5 + Double(k))
        case 1: value = .float(Float(i % 1000) * 0.25)
        case 2: value = .int32(Int32(truncatingIfNeeded: i &* 31 &- k))
        default: value = .boolean(i % 2 == 0)
        }
        metrics.append(SparkplugMetric(name: nil, alias: UInt64(k + 1), timestamp: ts, value: value))
    }
    return SparkplugPayload(timestamp: ts, seq: seq, metrics: metrics)
}

func measure(seconds: Double, _ body: (Int) throws -> Int) rethrows -> (iterations: Int, elapsed: Double, bytes: Int) {
    // Warm-up, then whole batches until the time is up.
    var bytes = 0
    for i in 0..<1000 { bytes &+= try body(i) }
    var iterations = 0
    bytes = 0
    let start = DispatchTime.now().uptimeNanoseconds
    var elapsed = 0.0
    repeat {
        for _ in 0..<1000 {
            bytes &+= try body(iterations)
            iterations += 1
        }
        elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    } while elapsed < seconds
    return (iterations, elapsed, bytes)
}

// 1. Payload model → protobuf bytes.
let encode = try measure(seconds: seconds) { i in
    try ndata(i, seq: UInt64(i % 256), count: metricsPerPayload).serialized().count
}

// 2. The session path: update → checks, alias mapping, seq, encode, action.
let names = (0..<metricsPerPayload).map { "Tag\($0)" }
var session = try EdgeNodeSession(
    configuration: EdgeNodeConfiguration(groupID: "G", edgeNodeID: "N"),
    nodeMetrics: names.enumerated().map { k, name in
        SparkplugMetric(
            name: name, timestamp: 0,
            value: k % 4 == 0 ? .double(0) : k % 4 == 1 ? .float(0) : k % 4 == 2 ? .int32(0) : .boolean(false))
    }, lastBdSeq: nil)
_ = session.prepareConnect(now: 0)
_ = session.connected(now: 0)
let sessionRun = try measure(seconds: seconds) { i in
    var changes = ndata(i, seq: 0, count: metricsPerPayload).metrics
    for k in changes.indices {
        changes[k].alias = nil
        changes[k].name = names[k]
    }
    let actions = try session.updateNode(changes, now: UInt64(i))
    guard case .publish(let p)? = actions.first else { return 0 }
    return p.payload.count
}

// 3. Allocations per encoded NDATA (payload model + encode).
var allocationsPerPayload: Double? = nil
if let count = mallocCount {
    let n = 10_000
    var sink = 0
    let before = count()
    for i in 0..<n { sink &+= try ndata(i, seq: 1, count: metricsPerPayload).serialized().count }
    let after = count()
    allocationsPerPayload = Double(after - before) / Double(n)
    if sink == 0 { print("") }
}

let result: [String: Any] = [
    "implementation": "swift (swift-protobuf 1.39.0)",
    "metrics_per_payload": metricsPerPayload,
    "payload_bytes": encode.bytes / max(encode.iterations, 1),
    "encode_payloads_per_s": Double(encode.iterations) / encode.elapsed,
    "encode_metrics_per_s": Double(encode.iterations * metricsPerPayload) / encode.elapsed,
    "session_ndata_per_s": Double(sessionRun.iterations) / sessionRun.elapsed,
    "session_metrics_per_s": Double(sessionRun.iterations * metricsPerPayload) / sessionRun.elapsed,
    "allocations_per_ndata": allocationsPerPayload as Any? ?? NSNull(),
]
let json = try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys])
print(String(decoding: json, as: UTF8.self))
