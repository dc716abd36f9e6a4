// libFuzzer target: reading a livestream or sales-post comment (Orders/CommentParser.swift, R-LIVE-2)
// against a campaign's items. Beyond not crashing: every intent names one of the items with a quantity
// from 1 to maxQuantity, and a phone it finds is a normalized Vietnamese number.
let parser = CommentParser(items: [
    .init(code: "A1", variantId: "v-a1-m", variantTitle: "Size M"), .init(code: "A1", variantId: "v-a1-l", variantTitle: "Size L"),
    .init(code: "V2", variantId: "v-v2", variantTitle: "Freesize"), .init(code: "áo", variantId: "v-ao", variantTitle: "Trắng"),
    .init(code: "10", variantId: "v-10", variantTitle: "Số 10"),
])
let variants = Set(["v-a1-m", "v-a1-l", "v-v2", "v-ao", "v-10"])

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCommentParser(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    let reading = parser.read(text)
    for intent in reading.intents {
        precondition(variants.contains(intent.variantId), "an intent for a variant the campaign does not have")
        precondition((1...CommentParser.maxQuantity).contains(intent.quantity), "quantity \(intent.quantity)")
    }
    if let phone = reading.phone {
        precondition(VietnamPhone.normalize(phone) == phone, "phone \(phone) is not normalized")
    }
    return 0
}
