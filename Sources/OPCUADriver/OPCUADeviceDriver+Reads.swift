import Foundation
import OPCUA
import Tags

// Values into the table: subscription notifications and polled Reads.
extension OPCUADeviceDriver {
    /// Runs on the client's reader thread with the values of one DataChangeNotification.
    func apply(_ batch: DataValueBatch, tags: [Int], client c: OPCUAClient) {
        let now = unixMicros()
        var count = 0
        tableLock.withLock {
            // A value that arrived just before the link dropped must not overwrite the disconnected mark; values
            // republished after a reactivation are the outage's own changes, delivered just before `.connected`.
            guard c.isDeliveringValues else { return }
            for change in batch {
                store(change.value, tag: tags[change.index], now: now)
                count += 1
            }
        }
        statistics.withLock { $0.notifications = ($0.notifications ?? 0) &+ UInt64(count) }
    }

    /// Runs on the client's thread after each Publish response of a subscription: its tags that did not report
    /// are unchanged, so still current.
    func confirmSubscribed(_ tags: [Int], client c: OPCUAClient) {
        let now = unixMicros()
        tableLock.withLock {
            guard c.state == .connected else { return }
            // Bad tags may be confirmed too: freshness matters only where the quality is good.
            for k in tags.indices { table.confirm(tags[k], at: now) }
        }
    }

    /// Maps one value onto tag `index`; the caller holds `tableLock`.
    ///
    /// Allocates nothing for numbers and Booleans on numeric and bool tags, nor for Strings on text tags: those are
    /// taken from the view as they lie in the message. Other combinations (an array shown as text, …) build the
    /// value first.
    func store(_ v: DataValueView, tag index: Int, now: Int64) {
        // The reply vouches for the value now, whatever its source timestamp says (see `TagTable.confirm`).
        table.confirm(index, at: now)
        if let t = v.serverTimestamp, t.ticks != 0 {
            serverTimestamps[index].store(OPCUAValues.microseconds(t), ordering: .relaxed)
        }
        if let type = v.builtinType {
            lock.lock()
            let known = serverTypes[index]
            if known?.type != type || known?.array != v.isArray { serverTypes[index] = (type, v.isArray) }
            lock.unlock()
        }
        let time = OPCUAValues.sampleTime(source: v.sourceTimestamp, server: v.serverTimestamp, now: now)
        let quality = OPCUAValues.quality(v.status)
        if v.status.isBad || v.isNull {
            table.markQuality(index, v.status.isBad ? quality : Quality(.decodeError), timestamp: time)
            return
        }
        let type = table.definitions[index].type
        guard case .string = type else {
            var unused = ""
            guard let scalar = v.inlineScalar,
                let value = OPCUAValues.sampleValue(scalar, for: table.definitions[index], text: &unused)
            else {
                table.markQuality(index, Quality(.decodeError), timestamp: time)
                return
            }
            table.update(index, TagSample(value: value, quality: quality, timestamp: time))
            return
        }
        let capacity = type.textCapacity
        textBuffer.removeAll(keepingCapacity: true)
        let lent: Void? = v.withContentBytes { raw in
            if v.builtinType == .byteString {
                OPCUAValues.appendHex(raw, to: &textBuffer, capacity: capacity)
            } else {
                OPCUAValues.appendUTF8(raw, to: &textBuffer, capacity: capacity)
            }
        }
        if lent == nil {
            let text = OPCUAValues.describe((try? v.value()) ?? .null)
            var copy = text
            copy.withUTF8 { OPCUAValues.appendUTF8(UnsafeRawBufferPointer($0), to: &textBuffer, capacity: capacity) }
        }
        let sample = TagSample(value: .text(length: textBuffer.count), quality: quality, timestamp: time)
        _ = textBuffer.withUnsafeBytes { table.update(index, sample, text: $0) }
    }

    /// Reads one polled group, one prepared Read per batch. Internal rather than private so that tests can drive
    /// cycles themselves.
    func poll(group g: Int) {
        guard let c = lock.withLock({ client }) else { return }
        let started = DispatchTime.now().uptimeNanoseconds
        let batches = lock.withLock { pollBatches[g] }
        var requests = 0
        var b = 0
        while b < batches.count, !isStopping {
            let batch = batches[b]
            b += 1
            requests += 1
            do {
                try c.read(batch.read) { values in
                    let now = unixMicros()
                    tableLock.withLock {
                        // A value that arrived just before the link dropped must not overwrite the disconnected mark.
                        guard c.state == .connected else { return }
                        for e in values { store(e.value, tag: batch.tags[e.index], now: now) }
                    }
                }
            } catch {
                let quality: Quality
                switch error as? OPCUAError {
                case .timeout?: quality = Quality(.timeout)
                case .serviceFault(_, let status)?: quality = Quality(.deviceStatus, detail: status.rawValue)
                default: quality = Quality(.disconnected)
                }
                if error as? OPCUAError != .notConnected {
                    recordError("Read of \(batch.tags.count) nodes failed: \(error)", timeout: quality.code == .timeout)
                }
                let now = unixMicros()
                for t in batch.tags { markQuality(t, quality, now) }
                if quality.code == .disconnected { break }
            }
        }
        let elapsed = Int64(DispatchTime.now().uptimeNanoseconds - started)
        statistics.withLock {
            $0.polls &+= 1
            $0.requests &+= UInt64(requests)
            $0.requestsPerCycle = requests
            $0.lastCycleNanoseconds = elapsed
            $0.cycleDurations.record(nanoseconds: elapsed)
        }
    }
}
