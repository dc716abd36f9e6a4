import ChatMeshAPI
import MeshRPC

/// Where a broadcast's audience comes from (R-MSG-2): a segment's members, a page at a time.
public protocol AudienceSource: Sendable {
    func members(shop: String, segmentId: String, pageToken: String, pageSize: Int) async throws(RPCError) -> ListSegmentMembersResponse
}

/// loyalty-svc's ListSegmentMembers, over the wire, with a service token
/// (messaging-svc's runner acts for every shop; the request names the shop).
public struct LoyaltySegmentAudience: AudienceSource {
    let client: LoyaltyService.Client
    let token: @Sendable () -> String

    /// - Parameter token: a fresh service token per call, so a long-running process never sends an expired one.
    public init(channel: any RPCChannel, token: @escaping @Sendable () -> String) {
        client = LoyaltyService.Client(channel: channel)
        self.token = token
    }

    /// One page of the segment's members with their contact details.
    public func members(shop: String, segmentId: String, pageToken: String, pageSize: Int) async throws(RPCError) -> ListSegmentMembersResponse {
        try await client.listSegmentMembers(
            ListSegmentMembersRequest(shopId: shop, segmentId: segmentId, pageSize: Int32(pageSize), pageToken: pageToken),
            options: .bearer(token(), timeout: .seconds(10))
        )
    }
}
