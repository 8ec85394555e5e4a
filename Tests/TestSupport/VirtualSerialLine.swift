import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A virtual null-modem cable: two pseudo-terminals whose master sides this process relays to each other, so two
/// programs can open `endA` and `endB` as serial ports and talk as over a real line.
///
/// Why two ptys and a relay rather than one pty: both programs open their port by path, and only a pty's slave
/// side can be opened by path. Why in-process rather than socat: nothing extra to install, and the line's lifetime
/// is the test's. The slave sides are held open here, so a program closing its end (a device restarting) does not
/// hang up the other end; it just hears silence, as on a real cable. Bytes sent while nobody reads the far end are
/// dropped once its input queue is full. Ptys carry bytes only: baud rate and parity are not modelled (Linux
/// refuses PARENB on a pty), and neither is the timing of characters on the wire.
public final class VirtualSerialLine: @unchecked Sendable {
    /// Path of one end (a `/dev/pts/N` slave), to open as a serial port.
    public let endA: String
    /// Path of the other end.
    public let endB: String

    private let masterA: Int32
    private let masterB: Int32
    private let slaveA: Int32
    private let slaveB: Int32
    private let wakeRead: Int32
    private let wakeWrite: Int32
    private let finished = DispatchSemaphore(value: 0)
    private var stopped = false

    public init() throws {
        let (mA, sA, pA) = try Self.openPseudoTerminal()
        let b: (Int32, Int32, String)
        do { b = try Self.openPseudoTerminal() } catch {
            close(mA)
            close(sA)
            throw error
        }
        var pipeEnds: [Int32] = [0, 0]
        guard pipe(&pipeEnds) == 0 else {
            for fd in [mA, sA, b.0, b.1] { close(fd) }
            throw PeerError("pipe failed: errno \(errno)")
        }
        (masterA, slaveA, endA) = (mA, sA, pA)
        (masterB, slaveB, endB) = b
        (wakeRead, wakeWrite) = (pipeEnds[0], pipeEnds[1])
        let thread = Thread { [self] in
            relay()
            finished.signal()
        }
        thread.name = "VirtualSerialLine relay"
        thread.start()
    }

    /// Stops the relay and closes both ptys; programs still holding an end get a hangup.
    public func stop() {
        guard !stopped else { return }
        stopped = true
        var byte: UInt8 = 1
        _ = write(wakeWrite, &byte, 1)
        finished.wait()
        for fd in [masterA, masterB, slaveA, slaveB, wakeRead, wakeWrite] { close(fd) }
    }

    deinit { stop() }

    /// A new pty: (nonblocking master, slave held open in raw mode, slave path).
    private static func openPseudoTerminal() throws -> (Int32, Int32, String) {
        let master = open("/dev/ptmx", O_RDWR | O_NOCTTY)
        guard master >= 0 else { throw PeerError("cannot open /dev/ptmx: errno \(errno)") }
        var name = [CChar](repeating: 0, count: 128)
        // grantpt is a no-op with devpts, so unlocking and naming the slave is all that is needed.
        guard unlockPseudoTerminal(master) == 0, pseudoTerminalName(master, &name, name.count) == 0 else {
            close(master)
            throw PeerError("cannot set up a pty: errno \(errno)")
        }
        let path = name.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        let slave = open(path, O_RDWR | O_NOCTTY)
        guard slave >= 0 else {
            close(master)
            throw PeerError("cannot open \(path): errno \(errno)")
        }
        // Raw before either program opens it: a cooked tty would echo frames back and translate CR/LF bytes.
        var settings = termios()
        tcgetattr(slave, &settings)
        cfmakeraw(&settings)
        tcsetattr(slave, TCSANOW, &settings)
        _ = fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK)
        return (master, slave, path)
    }

    private func relay() {
        var fds = [
            pollfd(fd: masterA, events: Int16(POLLIN), revents: 0),
            pollfd(fd: masterB, events: Int16(POLLIN), revents: 0),
            pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0),
        ]
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            if poll(&fds, nfds_t(fds.count), -1) < 0 {
                if errno == EINTR { continue }
                return
            }
            if fds[2].revents != 0 { return }
            for (from, to) in [(0, 1), (1, 0)] {
                let events = Int32(fds[from].revents)
                if events & Int32(POLLNVAL | POLLERR) != 0 { return }
                guard events & Int32(POLLIN) != 0 else { continue }
                let n = read(fds[from].fd, &buffer, buffer.count)
                guard n > 0 else { continue }
                var sent = 0
                while sent < n {
                    let w = buffer.withUnsafeBytes { write(fds[to].fd, $0.baseAddress! + sent, n - sent) }
                    // EAGAIN: the far end's input queue is full because nobody reads it; drop, as a line would.
                    if w <= 0 { break }
                    sent += w
                }
            }
        }
    }
}

// Glibc declares unlockpt and ptsname_r only under _XOPEN_SOURCE, so Swift's Glibc module does not import them;
// look them up in the C library instead.
private let unlockPseudoTerminal: @convention(c) (Int32) -> Int32 = cFunction("unlockpt")
private let pseudoTerminalName: @convention(c) (Int32, UnsafeMutablePointer<CChar>, Int) -> Int32 = cFunction(
    "ptsname_r")

private func cFunction<F>(_ name: String) -> F {
    guard let symbol = dlsym(nil, name) else { fatalError("\(name) not found in the C library") }
    return unsafeBitCast(symbol, to: F.self)
}
