import ChatMeshAPI
import MeshRPC
import Testing

/// An RPC's `Access:` proto line reaches its generated descriptor, and a role is admitted as the
/// README's Auth section says (Tests/interop/test_authorization.py calls every RPC over the wire).
@Suite struct MethodAccessTests {
    @Test func theProtoLineReachesTheDescriptor() {
        #expect(ConversationService.Method.connectPage.access == .managers)
        #expect(ConversationService.Method.attachTag.access == .staff)
        #expect(LoyaltyService.Method.adjustSegmentPoints.access == .managers)
        #expect(MessagingService.Method.deliverReply.access == .services)
        #expect(OutboxService.Method.replayDeadEvents.access == .managers)
        #expect(OutboxService.Method.listDeadEvents.access == .staff)
    }

    @Test func rolesAdmitted() {
        let admitted = { (access: MethodDescriptor.Access) in Role.allCases.filter(access.admits).map(\.rawValue).sorted() }
        #expect(admitted(.staff) == ["admin", "agent", "owner", "service"])
        #expect(admitted(.managers) == ["admin", "owner", "service"])
        #expect(admitted(.services) == ["service"])
    }
}
