import MeshRPC
import NIOCore
import Synchronization
import Testing

@Suite struct MessageQueueTests {
    @Test func aReaderGetsMessagesInOrderThenTheEnd() async throws {
        let queue = RPCMessageQueue<Int>(capacity: 8)
        #expect(queue.offer(1) == .accepted)
        #expect(queue.offer(2) == .accepted)
        queue.finish()
        #expect(queue.offer(3) == .closed)
        #expect(try await queue.next() == 1)
        #expect(try await queue.next() == 2)
        #expect(try await queue.next() == nil)
        #expect(try await queue.next() == nil)
    }

    @Test func aFullQueueSaysSoAndHoldsAWaitingWriterUntilRead() async throws {
        let queue = RPCMessageQueue<Int>(capacity: 2)
        #expect(queue.offer(1) == .accepted)
        #expect(queue.offer(2) == .full)
        let sent = Atomic<Bool>(false)
        let writer = Task {
            try await queue.send(3)
            sent.store(true, ordering: .relaxed)
        }
        // The writer's message is taken, but the writer waits while the queue is over capacity.
        try await Task.sleep(for: .milliseconds(50))
        let sentEarly = sent.load(ordering: .relaxed)
        #expect(!sentEarly)
        #expect(try await queue.next() == 1)
        try await writer.value
        let sentLater = sent.load(ordering: .relaxed)
        #expect(sentLater)
        #expect(try await queue.next() == 2)
        #expect(try await queue.next() == 3)
    }

    @Test func anErrorEndReachesTheReaderAfterWhatWasBuffered() async throws {
        let queue = RPCMessageQueue<Int>(capacity: 4)
        queue.offer(1)
        queue.finish(.failure(.unavailable("gone")))
        #expect(try await queue.next() == 1)
        await #expect(throws: RPCError.unavailable("gone")) { try await queue.next() }
    }

    @Test func aWaitingReaderIsWokenByAMessageAndByCancellation() async throws {
        let queue = RPCMessageQueue<Int>(capacity: 4)
        let reader = Task { try await queue.next() }
        try await Task.sleep(for: .milliseconds(20))
        queue.offer(42)
        #expect(try await reader.value == 42)

        let cancelled = Task { try await queue.next() }
        cancelled.cancel()
        await #expect(throws: RPCError.self) { try await cancelled.value }
    }

    @Test func closingReleasesWaitingWritersAndDropsTheBuffer() async throws {
        let queue = RPCMessageQueue<Int>(capacity: 1)
        queue.offer(1)
        let writer = Task { try await queue.send(2) }
        try await Task.sleep(for: .milliseconds(20))
        queue.close(.cancelled("reader left"))
        await #expect(throws: RPCError.self) { try await writer.value }
        await #expect(throws: RPCError.cancelled("reader left")) { try await queue.next() }
    }

    @Test func onTakeIsCalledForEveryMessageTheReaderTakes() async throws {
        let taken = Atomic<Int>(0)
        let queue = RPCMessageQueue<Int>(capacity: 4) { value in taken.add(value, ordering: .relaxed) }
        queue.offer(5)
        queue.offer(7)
        _ = try await queue.next()
        _ = try await queue.next()
        let total = taken.load(ordering: .relaxed)
        #expect(total == 12)
    }
}

@Suite struct DeframerTests {
    func framed(_ bytes: [UInt8], compressed: Bool = false) -> [UInt8] {
        let n = UInt32(bytes.count)
        return [compressed ? 1 : 0, UInt8(n >> 24), UInt8(n >> 16 & 0xff), UInt8(n >> 8 & 0xff), UInt8(n & 0xff)] + bytes
    }

    @Test func messagesSplitAnyWayAcrossChunksComeOutWhole() throws {
        let wire = framed([1, 2, 3]) + framed([]) + framed(Array(repeating: 9, count: 300))
        for split in [1, 2, 4, 5, 7, 64, wire.count] {
            var deframer = GRPCMessageDeframer(maxMessageBytes: 1024)
            var out: [[UInt8]] = []
            var i = 0
            while i < wire.count {
                let chunk = Array(wire[i..<min(i + split, wire.count)])
                chunk.withUnsafeBytes { deframer.append($0) }
                while let message = try deframer.next() {
                    #expect(!message.compressed)
                    out.append(Array(message.bytes.readableBytesView))
                }
                i += split
            }
            #expect(out == [[1, 2, 3], [], Array(repeating: 9, count: 300)], "split \(split)")
            #expect(!deframer.hasPartialMessage)
        }
    }

    @Test func anOversizeMessageIsRefusedFromItsPrefixAlone() {
        var deframer = GRPCMessageDeframer(maxMessageBytes: 100)
        let prefix = Array(framed(Array(repeating: 0, count: 101)).prefix(5))
        prefix.withUnsafeBytes { deframer.append($0) }
        #expect(throws: GRPCMessageDeframer.Failure.tooLarge(101)) { try deframer.next() }
    }

    @Test func theCompressedFlagIsReportedWithTheMessage() throws {
        var deframer = GRPCMessageDeframer(maxMessageBytes: 100)
        (framed([1], compressed: true) + framed([2])).withUnsafeBytes { deframer.append($0) }
        let first = try #require(try deframer.next())
        let second = try #require(try deframer.next())
        #expect(first.compressed && Array(first.bytes.readableBytesView) == [1])
        #expect(!second.compressed)
    }

    @Test func aTruncatedMessageIsPartial() throws {
        var deframer = GRPCMessageDeframer(maxMessageBytes: 100)
        Array(framed([1, 2, 3]).prefix(6)).withUnsafeBytes { deframer.append($0) }
        #expect(try deframer.next() == nil)
        #expect(deframer.hasPartialMessage)
    }
}
