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
        }
    }
}
