// libFuzzer target: a message template's placeholders and its rendering (Messaging/TemplateText.swift,
// R-MSG-1). The input is the template body; the parameters are its own placeholders' names upper-cased.
// Beyond not crashing: a body whose placeholders parse renders with all of them given, and the rendered
// text holds every value.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTemplateText(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let body = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    guard let names = try? TemplateText.placeholders(in: body) else { return 0 }
    let params = Dictionary(names.map { ($0, "<\($0.uppercased())>") }, uniquingKeysWith: { a, _ in a })
    let rendered: String
    do {
        rendered = try TemplateText.render(body, params: params)
    } catch {
        preconditionFailure("a body whose placeholders parse does not render with them all: \(error)")
    }
    for value in params.values {
        // Bytes, not Characters: a combining mark after a placeholder joins its last character.
        precondition(Array(rendered.utf8).firstRange(of: Array(value.utf8)) != nil, "the rendered text lacks \(value)")
    }
    if !names.isEmpty {
        precondition((try? TemplateText.render(body, params: [:])) == nil, "rendered with its parameters missing")
    }
    return 0
}
