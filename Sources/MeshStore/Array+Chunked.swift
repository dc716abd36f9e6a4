extension Array {
    /// Slices of at most `size` elements: one statement per slice keeps every backend under its bind limit.
    public func chunked(_ size: Int) -> [ArraySlice<Element>] {
        stride(from: 0, to: count, by: size).map { self[$0..<Swift.min($0 + size, count)] }
    }
}
