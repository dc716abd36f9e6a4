import ChatMeshAPI
import MeshRPC

/// How conversation-svc answers each of its refusals over gRPC: the one place where
/// a domain error becomes a status. The message names the request field first.
extension ConversationError: RPCErrorConvertible {
    public var rpcError: RPCError {
        switch self {
        case .pageNotConnected(let page): .notFound("page_id: page \(page) is not connected")
        case .noFolder(let page, let folder): .notFound("folder_id: page \(page) has no tag folder \(folder)")
        case .noTag(let field, let page, let tag): .notFound("\(field): page \(page) has no tag \(tag)")
        case .noConversation(let id): .notFound("conversation_id: no conversation \(id)")
        case .noCustomer(let id): .notFound("customer_id: no customer \(id)")
        case .noNote(let customer, let note): .notFound("note_id: customer \(customer) has no note \(note)")
        case .noCustomField(let key): .notFound("key: the shop defines no custom field \(key)")
        case .noShopMessage(let message): .notFound("message_id: this shop has no message \(message)")
        case .folderNameTaken(let name): .alreadyExists("name: the page already has a folder named \"\(name)\"")
        case .tagNameTaken(let name): .alreadyExists("name: the page already has a tag \"\(name)\", the same name ignoring case and accents (R-TAG-3)")
        case .tooManyTags(let conversation, let count):
            .failedPrecondition("tag_id: conversation \(conversation) already has \(count) tags, the most one conversation may carry (R-TAG-4)")
        case .nobodyOnline(let page): .failedPrecondition("staff_id: nobody is online on page \(page) to take an automatic assignment")
        case .closingUnassigned(let id):
            .failedPrecondition("conversation_id: conversation \(id) is not assigned to anyone, so it cannot be closed (R-CONV-1)")
        case .customFieldTypeFixed(let key, let type):
            .failedPrecondition("type: field \(key) is already defined as \(type.protoName); its type cannot change")
        case .customFieldValue(let problem): .invalidArgument("value: \(problem)")
        case .noMessage(let conversation, let message): .notFound("comment_message_id: conversation \(conversation) has no message \(message)")
        case .replyToBlockedCustomer(let conversation):
            .failedPrecondition("conversation_id: the customer of conversation \(conversation) is blocked (R-CONV-8); unblock them to reply")
        case .replyTargetNotOnPlatform(let target, let platform):
            .failedPrecondition("target: a \(target.protoName) reply is not possible on a \(platform.protoName) page (R-CONV-9)")
        case .notACustomerComment(let message): .failedPrecondition("comment_message_id: message \(message) is not a customer's comment")
        case .commentWithoutPlatformId(let message):
            .failedPrecondition("comment_message_id: comment \(message) was ingested without its platform_message_id, so the platform cannot be told which comment to answer")
        case .commentAlreadyRepliedPrivately(let message):
            .failedPrecondition("comment_message_id: comment \(message) already has its private reply; a comment gets one (R-CONV-9)")
        case .notAReply(let message): .failedPrecondition("message_id: message \(message) is not a reply sent with SendReply")
        case .replyNotFailed(let message, let delivery):
            .failedPrecondition("message_id: reply \(message) is \(delivery.protoName); only a FAILED reply is sent again")
        case .idempotencyKeyReused(let key):
            .failedPrecondition("idempotency_key: \"\(key)\" was used for a different reply (another conversation, target or text)")
        }
    }
}
