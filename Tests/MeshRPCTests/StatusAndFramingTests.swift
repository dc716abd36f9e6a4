import MeshRPC
import NIOCore
import Testing

@Suite struct StatusMessageEncodingTests {
    @Test(arguments: [
        "plain ascii",
        "100% done",
        "không tìm thấy đơn hàng",
        "emoji 👋 and newline\nand tab\t",
        "%%%",
        "",
    ])
    func roundTrips(_ message: String) {
        let encoded = StatusMessageEncoding.encode(message)
        #expect(encoded.utf8.allSatisfy { $0 >= 0x20 && $0 <= 0x7E })
        #expect(StatusMessageEncoding.decode(encoded) == message)
    }

    @Test func encodesPercentAndNonASCIIAsTheSpecSays() {
        #expect(StatusMessageEncoding.encode("a%b") == "a%25b")
        #expect(StatusMessageEncoding.encode("đ") == "%C4%91")
    }

    @Test func decodingIsLenientWithBrokenEscapes() {
        #expect(StatusMessageEncoding.decode("50%") == "50%")
        #expect(StatusMessageEncoding.decode("%zz ok") == "%zz ok")
        #expect(StatusMessageEncoding.decode("%41") == "A")
    }

    @Test func unknownCodesAreUnknown() {
        #expect(RPCError.Code(wireValue: 99) == .unknown)
        #expect(RPCError.Code(wireValue: 4) == .deadlineExceeded)
        #expect(RPCError.Code.deadlineExceeded.name == "DEADLINE_EXCEEDED")
    }
}

@Suite struct GRPCTimeoutTests {
    @Test func parsesEveryUnit() {
        #expect(GRPCTimeout.parse("1H") == .hours(1))
        #expect(GRPCTimeout.parse("2M") == .minutes(2))
        #expect(GRPCTimeout.parse("3S") == .seconds(3))
        #expect(GRPCTimeout.parse("250m") == .milliseconds(250))
        #expect(GRPCTimeout.parse("7u") == .microseconds(7))
        #expect(GRPCTimeout.parse("99999999n") == .nanoseconds(99_999_999))
    }

    @Test(arguments: ["", "S", "1", "1x", "123456789S", "-1S", "1.5S"])
    func refusesMalformed(_ text: String) {
        #expect(GRPCTimeout.parse(text) == nil)
    }

    @Test func formatsWithinEightDigitsRoundingUp() {
        #expect(GRPCTimeout.format(.milliseconds(1500)) == "1500000u")
        let f = GRPCTimeout.format(.seconds(200_000))
        #expect(f.count <= 9)
        #expect(GRPCTimeout.parse(f)!.nanoseconds >= TimeAmount.seconds(200_000).nanoseconds)
        #expect(GRPCTimeout.format(.nanoseconds(0)) == "1n")
    }

    // The longest value the header can say is more nanoseconds than an Int64 holds: it parses to the
    // largest amount, and a deadline that far away formats again for the next hop (the fuzzer's find).
    @Test func theLongestTimeoutFormatsAgain() throws {
        let longest = try #require(GRPCTimeout.parse("99999999H"))
        #expect(longest.nanoseconds == .max)
        #expect(GRPCTimeout.format(longest) == "2562048H")
        #expect(GRPCTimeout.parse(GRPCTimeout.format(longest)) == longest)
        #expect(GRPCTimeout.format(.nanoseconds(.max - 1)) == "2562048H")
        #expect(GRPCTimeout.format(.hours(2_562_047)) == "2562047H")
    }
}

@Suite struct FramingTests {
    private func body(_ bytes: [UInt8]) -> ByteBuffer { ByteBuffer(bytes: bytes) }

    @Test func unframesOneMessage() throws {
        guard case .message(let m) = GRPCFraming.unframeUnary(body([0, 0, 0, 0, 2, 0xAA, 0xBB]), maxMessageBytes: 10) else {
            Issue.record("expected a message")
            return
        }
        #expect(Array(m.readableBytesView) == [0xAA, 0xBB])
    }

    @Test func refusesWhatIsNotOneWholeMessage() {
        if case .malformed(let why) = GRPCFraming.unframeUnary(body([0, 0, 0, 0, 9, 1, 2]), maxMessageBytes: 100) {
            #expect(why.contains("length prefix"))
        } else {
            Issue.record("length larger than body must be malformed")
        }
        if case .malformed = GRPCFraming.unframeUnary(body([0, 0, 0]), maxMessageBytes: 100) {} else {
            Issue.record("a truncated prefix must be malformed")
        }
        if case .malformed = GRPCFraming.unframeUnary(body([0, 0, 0, 0, 1, 7, 0, 0, 0, 0, 1, 7]), maxMessageBytes: 100) {} else {
            Issue.record("two messages in a unary call must be malformed")
        }
        if case .compressed = GRPCFraming.unframeUnary(body([1, 0, 0, 0, 1, 7]), maxMessageBytes: 100) {} else {
            Issue.record("the compressed flag must be reported")
        }
        if case .tooLarge(let n) = GRPCFraming.unframeUnary(body([0, 0, 0, 1, 0]), maxMessageBytes: 100) {
            #expect(n == 256)
        } else {
            Issue.record("an oversize prefix must be reported")
        }
    }
}

@Suite struct MetadataTests {
    @Test func namesAreCaseInsensitiveAndOrdered() {
        var m = Metadata()
        m.add("X-Trace", "1")
        m.add("x-trace", "2")
        m.add("other", "3")
        #expect(m["x-trace"] == "1")
        #expect(m.count == 3)
        m.set("X-TRACE", "9")
        #expect(m["x-trace"] == "9")
        #expect(m.map(\.name) == ["other", "x-trace"])
    }
}
