import CNGHTTP2
import MeshRPC
import NIOCore

/// One streaming call's side of writing, the same on server and client: framed messages
/// waiting for nghttp2's data callback, and the writers held while too many bytes wait
/// (so a peer that does not read holds the writer rather than growing this process).
/// Lives on the connection's event loop.
struct StreamOutbound {
    /// A writer waits while this many bytes of its stream are queued.
    static let highWater = 64 * 1024

    enum WriteOutcome {
        case done
        /// Queued; the writer waits until the peer reads.
        case wait
        case refused(RPCError)
    }

    private var queue = CircularBuffer<ByteBuffer>(initialCapacity: 4)
    private(set) var bytes = 0
    /// nghttp2 was told there is nothing to send for now (NGHTTP2_ERR_DEFERRED).
    private var deferred = false
    private var writers: [CheckedContinuation<Void, any Error>] = []

    var isEmpty: Bool { queue.isEmpty }

    /// Queues a framed message; `.wait` when its writer must wait for room.
    mutating func append(_ framed: ByteBuffer, session: OpaquePointer, streamID: Int32) -> WriteOutcome {
        queue.append(framed)
        bytes += framed.readableBytes
        resume(session: session, streamID: streamID)
        return bytes >= Self.highWater ? .wait : .done
    }

    /// Tells nghttp2 there is something to send again (a message, or the end).
    mutating func resume(session: OpaquePointer, streamID: Int32) {
        if deferred {
            deferred = false
            nghttp2_session_resume_data(session, streamID)
        }
    }

    /// Holds a writer until there is room (or lets it go now).
    mutating func wait(_ continuation: CheckedContinuation<Void, any Error>) {
        if bytes < Self.highWater {
            continuation.resume()
        } else {
            writers.append(continuation)
        }
    }

    /// Lets every waiting writer go: with `error`, or (nil) as written — the call ended well
    /// with their messages queued; a later write learns it is over.
    mutating func releaseWriters(_ error: RPCError?) {
        guard !writers.isEmpty else { return }
        let waiting = writers
        writers.removeAll()
        for writer in waiting {
            if let error { writer.resume(throwing: error) } else { writer.resume() }
        }
    }

    /// Drops what is queued (the stream is being reset) and lets the writers go with `error`.
    mutating func discard(_ error: RPCError) {
        queue.removeAll()
        bytes = 0
        releaseWriters(error)
    }

    /// nghttp2's data callback: copies up to `length` queued bytes and lets writers go once
    /// below the high-water mark. nil when nothing is queued and the stream is not ending
    /// (the caller answers NGHTTP2_ERR_DEFERRED, and a later write resumes the stream).
    mutating func read(into buf: UnsafeMutablePointer<UInt8>, length: Int, ending: Bool) -> Int? {
        var written = 0
        while written < length, !queue.isEmpty {
            let index = queue.startIndex
            let n = min(length - written, queue[index].readableBytes)
            queue[index].readWithUnsafeReadableBytes { raw in
                UnsafeMutableRawPointer(buf + written).copyMemory(from: raw.baseAddress!, byteCount: n)
                return n
            }
            written += n
            if queue[index].readableBytes == 0 {
                queue.removeFirst()
            }
        }
        bytes -= written
        if bytes < Self.highWater, !writers.isEmpty {
            let waiting = writers
            writers.removeAll()
            for writer in waiting { writer.resume() }
        }
        if written == 0 && queue.isEmpty && !ending {
            deferred = true
            return nil
        }
        return written
    }

    /// Writes from a handler or caller: on the loop directly, else hopping to it; then waits
    /// for room when the stream's queue is over the high-water mark.
    static func write(
        on loop: any EventLoop,
        enqueue: @escaping @Sendable () -> WriteOutcome,
        wait: @escaping @Sendable (CheckedContinuation<Void, any Error>) -> Void
    ) async throws(RPCError) {
        let outcome: WriteOutcome
        if loop.inEventLoop {
            outcome = enqueue()
        } else {
            do {
                outcome = try await loop.submit(enqueue).get()
            } catch {
                throw .unavailable("the connection is gone")
            }
        }
        switch outcome {
        case .done:
            return
        case .refused(let error):
            throw error
        case .wait:
            break
        }
        do {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                if loop.inEventLoop {
                    wait(continuation)
                } else {
                    loop.execute { wait(continuation) }
                }
            }
        } catch let error as RPCError {
            throw error
        } catch {
            throw .cancelled("the call is over")
        }
    }
}
