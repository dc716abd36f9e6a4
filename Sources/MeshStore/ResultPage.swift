/// One page of a list as a store reads it: the items, and the token the next page
/// starts after ("" on the last page). Every List RPC answers one (API.md).
public struct ResultPage<Item: Sendable>: Sendable {
    public var items: [Item]
    public var nextPageToken: String

    public init(items: [Item], nextPageToken: String = "") {
        self.items = items
        self.nextPageToken = nextPageToken
    }
}
