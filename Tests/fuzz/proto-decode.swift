import NIOCore

// libFuzzer target: every generated bridge's decode (protobuf-c unpacking into C structs, then the
// Swift values built from them). Byte 0 picks the message type among GeneratedMessages.all; the rest
// is the message. Beyond not crashing: what decodes encodes, and decodes again to the same value (the
// same encoding).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzProtoDecode(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 1 else { return 0 }
    let types = GeneratedMessages.all
    let type = types[Int(data[0]) % types.count]
    let bytes = UnsafeRawBufferPointer(start: data + 1, count: size - 1)
    roundTrip(type, ByteBuffer(bytes: bytes))
    return 0
}

func roundTrip<Message: RPCMessage>(_ type: Message.Type, _ bytes: ByteBuffer) {
    guard let decoded = try? Message(protobuf: bytes) else { return }
    let encoded: [UInt8]
    do {
        encoded = try decoded.serializedBytes()
    } catch {
        preconditionFailure("\(Message.self) decoded but does not encode: \(error)")
    }
    guard let again = try? Message(serializedBytes: encoded) else {
        preconditionFailure("\(Message.self) does not decode what it encoded")
    }
    // protobuf-c packs fields in declaration order, so one value has one encoding.
    precondition((try? again.serializedBytes()) == encoded, "\(Message.self) changed in a round trip")
}
