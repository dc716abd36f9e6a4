import Foundation

/// R-MSG-1: template bodies with `{{placeholders}}`.
///
/// A placeholder is `{{name}}` (spaces inside the braces allowed), a name being
/// a letter or `_` then letters, digits, `_` or `.` (`{{order.code}}`). Anything
/// else between `{{` and `}}`, or a `{{` that never closes, makes the body
/// invalid: a template that cannot be filled is refused when it is created,
/// not discovered when a customer receives it. A send must give every
/// placeholder a non-empty value; the message never goes out with a hole.
public enum TemplateText {
    /// Why a template body is malformed.
    public enum Problem: Error, Hashable, CustomStringConvertible {
        case unclosed(at: Int)
        case badName(String)
        case empty

        public var description: String {
            switch self {
            case .unclosed(let at): "a {{ at character \(at) is never closed with }}"
            case .badName(let name): "\"{{\(name)}}\" is not a placeholder name (letters, digits, _ and ., starting with a letter or _)"
            case .empty: "the body is empty"
            }
        }
    }

    enum Piece: Hashable {
        case text(Substring)
        case placeholder(String)
    }

    static func pieces(_ body: String) throws(Problem) -> [Piece] {
        var pieces: [Piece] = []
        var rest = body[...]
        while let open = rest.range(of: "{{") {
            if open.lowerBound > rest.startIndex { pieces.append(.text(rest[rest.startIndex..<open.lowerBound])) }
            guard let close = rest[open.upperBound...].range(of: "}}") else {
                throw .unclosed(at: body.distance(from: body.startIndex, to: open.lowerBound))
            }
            let raw = rest[open.upperBound..<close.lowerBound]
            let name = raw.trimmingSpaces()
            guard isName(name) else { throw .badName(String(raw)) }
            pieces.append(.placeholder(String(name)))
            rest = rest[close.upperBound...]
        }
        if !rest.isEmpty { pieces.append(.text(rest)) }
        return pieces
    }

    static func isName(_ name: Substring) -> Bool {
        guard let first = name.unicodeScalars.first, first == "_" || (first.isASCII && first.properties.isAlphabetic) else { return false }
        return name.unicodeScalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "_" || $0 == ".") }
    }

    /// The placeholders of `body`, each once, in order of first use.
    public static func placeholders(in body: String) throws(Problem) -> [String] {
        if body.allSatisfy(\.isWhitespace) { throw .empty }
        var seen: Set<String> = []
        var names: [String] = []
        for case .placeholder(let name) in try pieces(body) where seen.insert(name).inserted {
            names.append(name)
        }
        return names
    }

    /// The placeholders a send gave no value for.
    public struct MissingParameters: Error, Hashable {
        /// Placeholders with no value (or an empty one), in order of first use.
        public let names: [String]
    }

    /// The body with every placeholder replaced; values are inserted as given
    /// (a value containing "{{x}}" is not expanded again).
    public static func render(_ body: String, params: [String: String]) throws -> String {
        let parts = try pieces(body)
        var missing: [String] = []
        for case .placeholder(let name) in parts where (params[name] ?? "").isEmpty && !missing.contains(name) {
            missing.append(name)
        }
        if !missing.isEmpty { throw MissingParameters(names: missing) }
        var out = ""
        for part in parts {
            switch part {
            case .text(let text): out += text
            case .placeholder(let name): out += params[name] ?? ""
            }
        }
        return out
    }
}

extension Substring {
    func trimmingSpaces() -> Substring {
        var s = self
        while s.first == " " { s = s.dropFirst() }
        while s.last == " " { s = s.dropLast() }
        return s
    }
}
