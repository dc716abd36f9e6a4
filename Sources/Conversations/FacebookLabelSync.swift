/// R-TAG-6: what a Facebook label sync may write, decided before anything is
/// written. One way only (Facebook → ChatMesh); nothing here ever goes back.
///
/// - A page syncing for the first time (`backfill`) takes up to 100 labels,
///   attached to anyone or not, with their attachments.
/// - A page that switched sync on later gets no back-fill: only labels that
///   arrive attached to someone are synced, as attach events.
/// - Either way a conversation never carries more than 50 tags (R-TAG-4), and
///   the page's synced labels never exceed 100.
public enum FacebookLabelSync {
    public static let maxLabelsPerPage = 100
    public static let maxTagsPerConversation = 50

    public struct Label: Sendable, Hashable {
        public let fbLabelId: String
        public let name: String

        public init(fbLabelId: String, name: String) {
            self.fbLabelId = fbLabelId
            self.name = name
        }
    }

    public struct Attachment: Sendable, Hashable {
        public let customerExternalId: String
        public let fbLabelIds: [String]

        public init(customerExternalId: String, fbLabelIds: [String]) {
            self.customerExternalId = customerExternalId
            self.fbLabelIds = fbLabelIds
        }
    }

    public enum Mode: Sendable, Hashable {
        /// The page's first sync: labels and attachments as they are on Facebook.
        case backfill
        /// Sync was switched on after the page was connected: attach events only.
        case attachEventsOnly
        /// Sync is off: nothing is written.
        case off
    }

    public struct Attach: Sendable, Hashable {
        public let customerExternalId: String
        public let fbLabelId: String
    }

    /// What a sync did: labels and attachments applied, and what was skipped and why.
    public struct Outcome: Sendable, Hashable {
        public var synced: Int
        public var skipped: Int
        public var skippedReasons: [String]
    }

    public struct Plan: Sendable, Hashable {
        /// Labels to create as hidden tags in the "Facebook" folder (new ones only).
        public var newLabels: [Label] = []
        public var attach: [Attach] = []
        public var skipped = 0
        public var reasons: [String] = []
    }

    /// - Parameters:
    ///   - syncedLabelIds: Facebook labels this page already has as tags.
    ///   - tagsOnConversation: how many tags each customer's conversation carries now (absent: none).
    ///   - attachedAlready: pairs already attached, which are not attached again.
    public static func plan(
        labels: [Label], attachments: [Attachment], mode: Mode,
        syncedLabelIds: Set<String>, tagsOnConversation: [String: Int], attachedAlready: Set<Attach> = []
    ) -> Plan {
        var plan = Plan()
        guard mode != .off else {
            plan.skipped = labels.count + attachments.reduce(0) { $0 + $1.fbLabelIds.count }
            if plan.skipped > 0 { plan.reasons.append("Facebook label sync is off for this page") }
            return plan
        }
        let attachedSomewhere = Set(attachments.flatMap(\.fbLabelIds))
        var known = syncedLabelIds
        var overPageLimit = 0
        var notBackfilled = 0
        var seen = Set<String>()
        for label in labels where seen.insert(label.fbLabelId).inserted {
            if known.contains(label.fbLabelId) { continue }
            if mode == .attachEventsOnly && !attachedSomewhere.contains(label.fbLabelId) {
                notBackfilled += 1
                continue
            }
            if known.count >= maxLabelsPerPage {
                overPageLimit += 1
                continue
            }
            known.insert(label.fbLabelId)
            plan.newLabels.append(label)
        }
        var overConversationLimit = 0
        var unknownLabel = 0
        var counts = tagsOnConversation
        for attachment in attachments {
            for id in attachment.fbLabelIds {
                guard known.contains(id) else {
                    unknownLabel += 1
                    continue
                }
                let pair = Attach(customerExternalId: attachment.customerExternalId, fbLabelId: id)
                if attachedAlready.contains(pair) { continue }
                let count = counts[attachment.customerExternalId, default: 0]
                guard count < maxTagsPerConversation else {
                    overConversationLimit += 1
                    continue
                }
                counts[attachment.customerExternalId] = count + 1
                plan.attach.append(pair)
            }
        }
        if overPageLimit > 0 { plan.reasons.append("\(overPageLimit) labels over the page's limit of \(maxLabelsPerPage)") }
        if notBackfilled > 0 { plan.reasons.append("\(notBackfilled) labels attached to nobody: sync was switched on after connecting, so there is no back-fill") }
        if unknownLabel > 0 { plan.reasons.append("\(unknownLabel) attachments of labels not synced") }
        if overConversationLimit > 0 { plan.reasons.append("\(overConversationLimit) attachments over \(maxTagsPerConversation) tags on a conversation") }
        plan.skipped = overPageLimit + notBackfilled + unknownLabel + overConversationLimit
        return plan
    }
}
