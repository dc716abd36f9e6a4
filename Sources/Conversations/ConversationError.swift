import ChatMeshAPI

/// Why conversation-svc refuses a command, as its rules and store see it; how each
/// is answered over gRPC is said once, in `ConversationServiceHandler+Status.swift`.
public enum ConversationError: Error, Sendable, Hashable {
    // Something named does not exist (in this shop).
    case pageNotConnected(String)
    case noFolder(page: String, folder: String)
    case noTag(field: String, page: String, tag: String)
    case noConversation(String)
    case noCustomer(String)
    case noNote(customer: String, note: String)
    case noCustomField(String)
    case noShopMessage(String)

    // R-TAG-3: names are unique per page, ignoring case and accents.
    case folderNameTaken(String)
    case tagNameTaken(String)
    /// R-TAG-4: a conversation carries at most `FacebookLabelSync.maxTagsPerConversation` tags.
    case tooManyTags(conversation: String, count: Int)
    /// R-CONV-1: an automatic assignment needs someone online.
    case nobodyOnline(page: String)
    /// R-CONV-1: what gets closed is an assigned conversation.
    case closingUnassigned(String)
    case customFieldTypeFixed(key: String, type: CustomField.FieldType)
    /// A custom field's value that its type refuses (`CustomFieldRules`).
    case customFieldValue(String)

    // R-CONV-9: staff replies (`StaffReply`).
    case noMessage(conversation: String, message: String)
    case replyToBlockedCustomer(conversation: String)
    case replyTargetNotOnPlatform(target: ChatMessage.Target, platform: Page.Platform)
    case notACustomerComment(String)
    case commentWithoutPlatformId(String)
    case commentAlreadyRepliedPrivately(String)
    case notAReply(String)
    case replyNotFailed(message: String, delivery: ChatMessage.Delivery)
    /// An idempotency key used before for a different reply.
    case idempotencyKeyReused(String)
}
