import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// Runs a call's Task on its connection's event loop: the request arrives,
/// runs and answers on one thread, with no hand-over between thread pools.
final class EventLoopTaskExecutor: TaskExecutor, @unchecked Sendable {
    // The loop is immutable and EventLoop is Sendable; @unchecked covers the protocol's requirements only.
    let loop: any EventLoop

    init(loop: any EventLoop) {
        self.loop = loop
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let executor = asUnownedTaskExecutor()
        loop.execute {
            job.runSynchronously(on: executor)
        }
    }
}

enum WallClock {
    /// Milliseconds since the epoch (token expiry is wall-clock time).
    static func nowMs() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME_COARSE, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }
}
