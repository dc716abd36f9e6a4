import ChatMeshAPI

/// Why messaging-svc refuses a command, as its rules and store see it; how each is
/// answered over gRPC is said once, in `MessagingServiceHandler+Status.swift`.
public enum MessagingError: Error, Sendable, Hashable {
    case noTemplate(String)
    case noBroadcast(String)
    case noMessage(String)
    /// R-ZNS-2: a template disabled for poor quality sends nothing.
    case templateDisabled(String)
    /// Placeholders of the template the send gave no value for.
    case missingParameters([String])
    case noProvider(Template.Channel)
    /// A payment reference names one top-up, of one amount (R-MSG-3).
    case topUpAmountDiffers(paymentRef: String)
    /// R-ZNS-3: the OA's quality level allows only some purposes.
    case purposeNotAllowed(Template.Purpose, allowed: [Template.Purpose])
    /// R-ZNS-2: the day's quota is used up.
    case znsQuotaUsed(quota: Int)
    /// R-MSG-3: the shop's balance cannot cover the message.
    case balanceTooLow(balanceVnd: Int64, priceVnd: Int64, channel: Template.Channel)
    case messageNotSentYet(String)
    case messageSettled(String, MessageDelivery.Status)
    case feedbackForZnsOnly
    case messageNotDelivered(String)
    /// A status stored that this build does not know: the database was written by another version.
    case unknownStatus(what: String, stored: String)
    case broadcastNotCancellable(String, Broadcast.Status)
    /// Another replica's runner took the broadcast over: this one stalled past its lease (RunnerLease).
    case leaseLost(broadcastId: String)
}
