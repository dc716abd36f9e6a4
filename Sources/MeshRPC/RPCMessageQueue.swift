import NIOCore
import Synchronization

/// Messages handed from one task (or an event loop) to a single reader, with a
/// bound: a producer that waits (`send`) is held while `capacity` messages are
/// unread, and one that cannot wait (a transport on its event loop, `offer`)
/// learns the queue is full and stops opening its flow-control window. Either
/// way a reader that stops reading holds its writer, and memory stays bounded.
public final class RPCMessageQueue<Element: Sendable>: Sendable {
    private struct State {
        var buffer = CircularBuffer<Element>(initialCapacity: 4)
        /// Set once: nil while open; what the reader gets after the buffer.
        var end: Result<Void, RPCError>?
        var reader: CheckedContinuation<Element?, any Error>?
        var writers: [(id: UInt64, continuation: CheckedContinuation<Void, any Error>)] = []
        var nextWriterID: UInt64 = 0
    }

    public let capacity: Int
    private let state = Mutex(State())
    /// Called after the reader takes a message (on the reader's thread), e.g. to open a window.
    private let onTake: (@Sendable (Element) -> Void)?

    public init(capacity: Int, onTake: (@Sendable (Element) -> Void)? = nil) {
        precondition(capacity > 0)
        self.capacity = capacity
        self.onTake = onTake
    }

    /// What offering a message to the queue did.
    public enum Offer: Sendable, Equatable {
        /// Taken, and there is room for more.
        case accepted
        /// Taken, and the queue is now full: stop producing until the reader takes one.
        case full
        /// The queue was finished (the reader went away or the call ended): dropped.
        case closed
    }

    /// Adds without waiting; a transport on its event loop calls this.
    @discardableResult
    public func offer(_ element: Element) -> Offer {
        let (reader, result): (CheckedContinuation<Element?, any Error>?, Offer) = state.withLock { s in
            if s.end != nil { return (nil, .closed) }
            if let reader = s.reader {
                s.reader = nil
                return (reader, .accepted)
            }
            s.buffer.append(element)
            return (nil, s.buffer.count >= capacity ? .full : .accepted)
        }
        if let reader {
            reader.resume(returning: element)
            onTake?(element)
        }
        return result
    }

    /// Adds, waiting while the queue is full. Throws the queue's end when it was finished
    /// (the call is over), and CANCELLED when the waiting task is cancelled.
    public func send(_ element: Element) async throws(RPCError) {
        switch offer(element) {
        case .accepted:
            return
        case .closed:
            throw closedError()
        case .full:
            break
        }
        let id = state.withLock { s -> UInt64 in
            s.nextWriterID &+= 1
            return s.nextWriterID
        }
        do {
            try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                    let resumeNow: Result<Void, RPCError>? = state.withLock { s in
                        if let end = s.end { return end.flatMap { .failure(.cancelled("the stream was closed")) } }
                        if s.buffer.count < capacity { return .success(()) }
                        s.writers.append((id, continuation))
                        return nil
                    }
                    if let resumeNow { continuation.resume(with: resumeNow) }
                }
            } onCancel: {
                let waiting = state.withLock { s -> CheckedContinuation<Void, any Error>? in
                    guard let i = s.writers.firstIndex(where: { $0.id == id }) else { return nil }
                    return s.writers.remove(at: i).continuation
                }
                waiting?.resume(throwing: RPCError.cancelled("cancelled while waiting to send"))
            }
        } catch let error as RPCError {
            throw error
        } catch {
            throw .cancelled("cancelled while waiting to send")
        }
    }

    /// The next message; nil after the last one; throws the end's status, or CANCELLED.
    public func next() async throws(RPCError) -> Element? {
        let step: QueueStep<Element> = state.withLock { s in
            if let first = s.buffer.popFirst() {
                let writers = s.writers
                s.writers.removeAll()
                return .element(first, writers.map(\.continuation))
            }
            if let end = s.end { return .end(end) }
            return .wait
        }
        switch step {
        case .element(let element, let writers):
            for writer in writers { writer.resume() }
            onTake?(element)
            return element
        case .end(let end):
            try end.get()
            return nil
        case .wait:
            break
        }
        do {
            return try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Element?, any Error>) in
                    var writers: [CheckedContinuation<Void, any Error>] = []
                    let now: Result<Element?, RPCError>? = state.withLock { s in
                        if let first = s.buffer.popFirst() {
                            writers = s.writers.map(\.continuation)
                            s.writers.removeAll()
                            return .success(first)
                        }
                        if let end = s.end { return end.map { nil } }
                        if Task.isCancelled { return .failure(.cancelled("cancelled while waiting for a message")) }
                        s.reader = continuation
                        return nil
                    }
                    for writer in writers { writer.resume() }
                    if let now {
                        if case .success(let element?) = now { onTake?(element) }
                        continuation.resume(with: now.mapError { $0 as any Error })
                    }
                }
            } onCancel: {
                let reader = state.withLock { s -> CheckedContinuation<Element?, any Error>? in
                    defer { s.reader = nil }
                    return s.reader
                }
                reader?.resume(throwing: RPCError.cancelled("cancelled while waiting for a message"))
            }
        } catch let error as RPCError {
            throw error
        } catch {
            throw .cancelled("cancelled while waiting for a message")
        }
    }

    /// Ends the queue: the reader gets what is buffered, then nil (success) or the error.
    /// Waiting writers are released with CANCELLED. Later ends are ignored.
    public func finish(_ end: Result<Void, RPCError> = .success(())) {
        let (reader, writers): (CheckedContinuation<Element?, any Error>?, [CheckedContinuation<Void, any Error>]) = state.withLock { s in
            guard s.end == nil else { return (nil, []) }
            s.end = end
            let writers = s.writers.map(\.continuation)
            s.writers.removeAll()
            let reader = s.reader
            s.reader = nil
            return (reader, writers)
        }
        for writer in writers { writer.resume(throwing: RPCError.cancelled("the stream was closed")) }
        reader?.resume(with: end.map { nil }.mapError { $0 as any Error })
    }

    /// Ends the queue and drops what is buffered: the reader went away.
    public func close(_ error: RPCError) {
        finish(.failure(error))
        state.withLock { $0.buffer.removeAll() }
    }

    /// The error the queue was finished with, if it was (nil while open or after a normal end).
    public var endError: RPCError? {
        state.withLock { s in
            if case .failure(let error) = s.end { return error }
            return nil
        }
    }

    public var isFull: Bool { state.withLock { $0.buffer.count >= capacity } }
    public var isFinished: Bool { state.withLock { $0.end != nil } }

    private func closedError() -> RPCError {
        state.withLock { s in
            if case .failure(let error) = s.end { return error }
            return .cancelled("the stream was closed")
        }
    }
}

private enum QueueStep<Element> {
    case element(Element, [CheckedContinuation<Void, any Error>])
    case end(Result<Void, RPCError>)
    case wait
}
