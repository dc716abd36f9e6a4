import NIOCore

/// Runs Tasks on one event loop: a server call's request arrives, runs and answers on one thread,
/// with no hand-over between thread pools; the SQLite store's writer runs its batches on a loop of its own.
public final class EventLoopTaskExecutor: TaskExecutor, @unchecked Sendable {
    // The loop is immutable and EventLoop is Sendable; @unchecked covers the protocol's requirements only.
    public let loop: any EventLoop

    public init(loop: any EventLoop) {
        self.loop = loop
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let executor = asUnownedTaskExecutor()
        loop.execute {
            job.runSynchronously(on: executor)
        }
    }
}
