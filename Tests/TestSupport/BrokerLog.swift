import Foundation

/// What mosquitto's own log (`log_type all`) says one client sent, in order: the broker is a witness independent of
/// the client's code for the flags a subscriber cannot see (the Will of a CONNECT, the clean-session flag, the QoS
/// and retain flag a PUBLISH was sent with, whether a DISCONNECT was sent).
public struct BrokerLog {
    public enum Event: Equatable, CustomStringConvertible {
        /// CONNECT: protocol (2: MQTT 3.1.1, 5: MQTT 5), clean session / clean start, and its Will, if any.
        case connect(protocolLevel: Int, cleanSession: Bool, will: Will?)
        case publish(topic: String, qos: Int, retain: Bool)
        /// A PUBLISH the broker sent to the client.
        case delivered(topic: String, qos: Int, retain: Bool)
        case subscribe([Subscription])
        case disconnect

        public var description: String {
            switch self {
            case .connect(let p, let c, let w): "CONNECT p\(p) c\(c ? 1 : 0) will=\(w.map { "\($0)" } ?? "none")"
            case .publish(let t, let q, let r): "PUBLISH \(t) q\(q) r\(r ? 1 : 0)"
            case .delivered(let t, let q, let r): "delivered \(t) q\(q) r\(r ? 1 : 0)"
            case .subscribe(let s): "SUBSCRIBE \(s.map { "\($0.topic) q\($0.qos)" })"
            case .disconnect: "DISCONNECT"
            }
        }
    }

    public struct Will: Equatable, CustomStringConvertible {
        public var topic: String
        public var qos: Int
        public var retain: Bool
        public var description: String { "\(topic) q\(qos) r\(retain ? 1 : 0)" }

        public init(topic: String, qos: Int, retain: Bool) {
            self.topic = topic
            self.qos = qos
            self.retain = retain
        }
    }

    public struct Subscription: Equatable {
        public var topic: String
        public var qos: Int
    }

    public let events: [Event]

    /// The events of client `clientID` in `log` (mosquitto 2.0's wording).
    public init(_ log: String, clientID: String) {
        let lines = log.split(separator: "\n", omittingEmptySubsequences: false).map { line -> Substring in
            // "1796314844: text": drop the time stamp.
            guard let colon = line.firstIndex(of: ":") else { return line }
            return line[line.index(after: colon)...].drop { $0 == " " }
        }
        var events: [Event] = []
        var i = 0
        func next() -> Substring? { i + 1 < lines.count ? lines[i + 1] : nil }
        while i < lines.count {
            let line = lines[i]
            if line.hasPrefix("New client connected from "), line.contains(" as \(clientID) (") {
                // "... as ID (p2, c1, k5)." then "Will message specified (N bytes) (r0, q1)." and "\tTOPIC".
                let flags = Self.parenthesised(line).last ?? ""
                let protocolLevel = Int(Self.flag(flags, "p") ?? "") ?? 0
                let clean = Self.flag(flags, "c") == "1"
                var will: Will?
                if let w = next(), w.hasPrefix("Will message specified") {
                    let wf = Self.parenthesised(w).last ?? ""
                    i += 1
                    let topic = next().map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
                    i += 1
                    will = Will(
                        topic: topic, qos: Int(Self.flag(wf, "q") ?? "") ?? -1, retain: Self.flag(wf, "r") == "1")
                }
                events.append(.connect(protocolLevel: protocolLevel, cleanSession: clean, will: will))
            } else if line.hasPrefix("Received PUBLISH from \(clientID) (") {
                if let p = Self.publishFlags(line) {
                    events.append(.publish(topic: p.topic, qos: p.qos, retain: p.retain))
                }
            } else if line.hasPrefix("Sending PUBLISH to \(clientID) (") {
                if let p = Self.publishFlags(line) {
                    events.append(.delivered(topic: p.topic, qos: p.qos, retain: p.retain))
                }
            } else if line == "Received SUBSCRIBE from \(clientID)" {
                var subscriptions: [Subscription] = []
                // "\tTOPIC (QoS 1)" lines follow.
                while let s = next(), s.hasPrefix("\t"), let open = s.lastIndex(of: "(") {
                    let topic = s[s.index(after: s.startIndex)..<open].trimmingCharacters(in: .whitespaces)
                    let qos = Int(s[open...].filter(\.isNumber)) ?? -1
                    subscriptions.append(Subscription(topic: topic, qos: qos))
                    i += 1
                }
                events.append(.subscribe(subscriptions))
            } else if line == "Received DISCONNECT from \(clientID)" {
                events.append(.disconnect)
            }
            i += 1
        }
        self.events = events
    }

    /// Every CONNECT, in order.
    public var connects: [(protocolLevel: Int, cleanSession: Bool, will: Will?)] {
        events.compactMap {
            if case .connect(let p, let c, let w) = $0 { (p, c, w) } else { nil }
        }
    }

    /// Every PUBLISH, in order.
    public var publishes: [(topic: String, qos: Int, retain: Bool)] {
        events.compactMap {
            if case .publish(let t, let q, let r) = $0 { (t, q, r) } else { nil }
        }
    }

    /// "... (d0, q0, r0, m0, 'TOPIC', ... (N bytes))"
    private static func publishFlags(_ line: Substring) -> (topic: String, qos: Int, retain: Bool)? {
        let inner = line.drop { $0 != "(" }.dropFirst()
        let parts = inner.split(separator: ",", maxSplits: 4).map { $0.trimmingCharacters(in: .whitespaces) }
        guard parts.count == 5, let q = Int(parts[1].dropFirst()), parts[4].hasPrefix("'") else { return nil }
        let rest = parts[4].dropFirst()
        guard let quote = rest.firstIndex(of: "'") else { return nil }
        return (String(rest[..<quote]), q, parts[2] == "r1")
    }

    private static func parenthesised(_ s: Substring) -> [Substring] {
        var out: [Substring] = []
        var rest = s[...]
        while let open = rest.firstIndex(of: "("), let close = rest[open...].firstIndex(of: ")") {
            out.append(rest[rest.index(after: open)..<close])
            rest = rest[rest.index(after: close)...]
        }
        return out
    }

    /// The value after `letter` in "p2, c1, k5".
    private static func flag(_ flags: Substring, _ letter: Character) -> Substring? {
        flags.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.first { $0.first == letter }
            .map { Substring($0.dropFirst()) }
    }
}
