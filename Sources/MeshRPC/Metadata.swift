/// Custom request or response metadata: HTTP/2 headers other than the pseudo
/// headers and those the gRPC protocol itself uses. Names are lower case.
public struct Metadata: Sendable, Hashable, Sequence {
    /// One header: names are lower case, values as sent.
    public typealias Element = (name: String, value: String)

    private var names: [String] = []
    private var values: [String] = []

    public init() {}

    public init(_ pairs: [(String, String)]) {
        for (n, v) in pairs {
            add(n, v)
        }
    }

    public var isEmpty: Bool { names.isEmpty }
    public var count: Int { names.count }

    public mutating func add(_ name: String, _ value: String) {
        names.append(name.lowercased())
        values.append(value)
    }

    /// Replaces every value of `name` with this one.
    public mutating func set(_ name: String, _ value: String) {
        remove(name)
        add(name, value)
    }

    public mutating func remove(_ name: String) {
        let lower = name.lowercased()
        var i = names.count - 1
        while i >= 0 {
            if names[i] == lower {
                names.remove(at: i)
                values.remove(at: i)
            }
            i -= 1
        }
    }

    /// The first value of `name`.
    public subscript(_ name: String) -> String? {
        let lower = name.lowercased()
        for i in names.indices where names[i] == lower {
            return values[i]
        }
        return nil
    }

    public func makeIterator() -> AnyIterator<Element> {
        var i = 0
        return AnyIterator {
            guard i < names.count else { return nil }
            defer { i += 1 }
            return (names[i], values[i])
        }
    }

    public static func == (lhs: Metadata, rhs: Metadata) -> Bool {
        lhs.names == rhs.names && lhs.values == rhs.values
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(names)
        hasher.combine(values)
    }
}
