import Foundation

/// What a local user may do over the control socket (decision 0024).
public enum ControlRole: Int, Sendable, Comparable, CustomStringConvertible {
    /// Status, tags, reads, history, audit, loops listing, MQTT status, health.
    case readOnly
    /// Everything that changes the plant or the agent: writes, loop mode/setpoint/manual/tune, rebirth, config diff.
    case `operator`

    public static func < (a: ControlRole, b: ControlRole) -> Bool { a.rawValue < b.rawValue }

    public var description: String { self == .operator ? "operator" : "read-only" }
}

extension ControlRequest.Command {
    /// The role a command needs. Exhaustive on purpose: a new command must be classified before it compiles.
    /// `configDiff` reads whatever file the client names with the agent's rights, so it is an operator's.
    public var requiredRole: ControlRole {
        switch self {
        case .status, .tags, .read, .history, .audit, .loops, .mqttStatus, .health, .loopModelList, .loopModelShow,
            .loopTestList, .loopTestShow:
            return .readOnly
        case .write, .loopMode, .loopSetpoint, .loopManual, .loopTune, .mqttRebirth, .configDiff:
            return .operator
        // `add` reads a file's text the client sent, not a path on the agent's side; it changes the ledger.
        case .loopModelActivate, .loopModelRollback, .loopModelAdd: return .operator
        // A shadow changes nothing the loop does, but it costs the loop's thread a prediction per cycle.
        case .loopModelShadow: return .operator
        // A test moves the plant's MVs like a mode change does.
        case .loopTestStart, .loopTestStop: return .operator
        }
    }
}

/// Who may connect, and as what: root, the agent's own user and members of the operator group (the operator
/// socket's group, the agent's own) are operators; members of the read-only group may only read; anyone else is
/// turned away at the connection.
public struct ControlAccess: Sendable, Equatable {
    public var operatorGroup: gid_t
    /// nil: no read-only role (and no read-only socket).
    public var readOnlyGroup: gid_t?
    public var agentUser: uid_t

    public init(operatorGroup: gid_t = getegid(), readOnlyGroup: gid_t?, agentUser: uid_t = geteuid()) {
        self.operatorGroup = operatorGroup
        self.readOnlyGroup = readOnlyGroup
        self.agentUser = agentUser
    }

    /// The role of a peer with these credentials; nil when it has none.
    public func role(uid: uid_t, groups: [gid_t]) -> ControlRole? {
        if uid == 0 || uid == agentUser || groups.contains(operatorGroup) { return .operator }
        if let readOnlyGroup, groups.contains(readOnlyGroup) { return .readOnly }
        return nil
    }

    /// Resolves a group given by name or number; nil when the system has no such group.
    public static func groupID(_ nameOrNumber: String) -> gid_t? {
        if let number = gid_t(nameOrNumber) { return number }
        var entry = Glibc.group()
        var result: UnsafeMutablePointer<Glibc.group>?
        var buffer = [CChar](repeating: 0, count: 16_384)
        guard getgrnam_r(nameOrNumber, &entry, &buffer, buffer.count, &result) == 0, result != nil else { return nil }
        return entry.gr_gid
    }
}

/// The process at the other end of a control connection, as the kernel reports it when it connected
/// (`SO_PEERCRED`, `SO_PEERGROUPS`): nothing in it comes from what the client sends.
public struct ControlPeer: Sendable, Equatable {
    public var uid: uid_t
    public var gid: gid_t
    public var pid: pid_t
    /// The primary group and the supplementary groups.
    public var groups: [gid_t]
    /// The user's name from the password database, nil when it has none.
    public var userName: String?
    /// The role this connection acts with: the peer's role, capped by the socket it came through.
    public var role: ControlRole

    public init(uid: uid_t, gid: gid_t, pid: pid_t, groups: [gid_t], userName: String?, role: ControlRole) {
        self.uid = uid
        self.gid = gid
        self.pid = pid
        self.groups = groups
        self.userName = userName
        self.role = role
    }

    /// The audit trail's `source` for this peer: `cli:uid=N,user=NAME`.
    public var auditSource: String { "cli:uid=\(uid)" + (userName.map { ",user=\($0)" } ?? "") }

    /// `uid=N (NAME)`, for messages.
    public var who: String { "uid=\(uid)" + (userName.map { " (\($0))" } ?? "") }

    /// The kernel's record of the process that connected `fd`; nil if the socket has none (not a Unix socket).
    static func credentials(of fd: Int32) -> (uid: uid_t, gid: gid_t, pid: pid_t, groups: [gid_t])? {
        // struct ucred {pid_t pid; uid_t uid; gid_t gid;}, spelled out because Glibc hides it behind _GNU_SOURCE.
        var raw: (Int32, UInt32, UInt32) = (0, 0, 0)
        var length = socklen_t(MemoryLayout.size(ofValue: raw))
        guard getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &raw, &length) == 0 else { return nil }
        var groups = [raw.2]
        // SO_PEERGROUPS: the supplementary groups the peer had when it connected (not /etc/group's view of its
        // user, which would count a group the process dropped or a membership added after it logged in).
        var supplementary = [gid_t](repeating: 0, count: 64)
        var size = socklen_t(supplementary.count * MemoryLayout<gid_t>.size)
        var rc = getsockopt(fd, SOL_SOCKET, soPeerGroups, &supplementary, &size)
        if rc != 0 && errno == ERANGE {
            supplementary = [gid_t](repeating: 0, count: Int(size) / MemoryLayout<gid_t>.size + 1)
            size = socklen_t(supplementary.count * MemoryLayout<gid_t>.size)
            rc = getsockopt(fd, SOL_SOCKET, soPeerGroups, &supplementary, &size)
        }
        if rc == 0 { groups += supplementary.prefix(Int(size) / MemoryLayout<gid_t>.size) }
        return (raw.1, raw.2, raw.0, groups)
    }

    /// The name of user `uid` (getpwuid_r), nil when the password database has none.
    static func userName(_ uid: uid_t) -> String? {
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 16_384)
        guard getpwuid_r(uid, &entry, &buffer, buffer.count, &result) == 0, result != nil, let name = entry.pw_name
        else { return nil }
        return String(cString: name)
    }
}

/// SO_PEERGROUPS (Linux 4.13) on the architectures the agent ships for; Glibc's headers may predate it.
private let soPeerGroups: Int32 = 59
