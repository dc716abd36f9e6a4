import ChatMeshAPI
import MeshRPC

/// How messaging-svc answers each of its refusals over gRPC: the one place where a
/// domain error becomes a status. The message names the request field first.
extension MessagingError: RPCErrorConvertible {
    public var rpcError: RPCError {
        switch self {
        case .noTemplate(let id): .notFound("template_id: no template \(id)")
        case .noBroadcast(let id): .notFound("broadcast_id: no broadcast \(id)")
        case .noMessage(let id): .notFound("message_id: no message \(id)")
        case .templateDisabled(let id): .failedPrecondition("template_id: template \(id) is disabled (poor ZNS quality, R-ZNS-2)")
        case .missingParameters(let names): .invalidArgument("params: no value for \(names.map { "{{\($0)}}" }.joined(separator: ", "))")
        case .noProvider(let channel): .failedPrecondition("channel: no provider is configured for \(channel.protoName)")
        case .topUpAmountDiffers(let ref): .failedPrecondition("payment_ref: \(ref) already topped up a different amount")
        case .purposeNotAllowed(let purpose, let allowed):
            .failedPrecondition(
                "template_id: this OA may not yet send \(purpose.protoName) messages; it may send \(allowed.map(\.protoName).joined(separator: ", ")) (R-ZNS-3)"
            )
        case .znsQuotaUsed(let quota):
            .resourceExhausted("quota: today's ZNS quota of \(quota) messages is used up; it renews at midnight Vietnam time (R-ZNS-2)")
        case .balanceTooLow(let balance, let price, let channel):
            .resourceExhausted("balance: \(balance) VND cannot cover this \(channel.protoName) message at \(price) VND; top up first (R-MSG-3)")
        case .messageNotSentYet(let id): .failedPrecondition("message_id: message \(id) has not been sent yet")
        case .messageSettled(let id, let status): .failedPrecondition("message_id: message \(id) is \(status.rawValue) already")
        case .feedbackForZnsOnly: .failedPrecondition("message_id: feedback is rated for ZNS messages only (R-ZNS-1)")
        case .messageNotDelivered(let id): .failedPrecondition("message_id: message \(id) was not delivered")
        case .unknownStatus(let what, let stored): .internal("\(what) has a status this build does not know: \(stored)")
        case .broadcastNotCancellable(let id, let status): .failedPrecondition("broadcast_id: broadcast \(id) is \(status.protoName) and cannot be cancelled")
        case .leaseLost(let id): RPCError(.aborted, "broadcast_id: broadcast \(id) is being sent by another replica")
        }
    }
}
