import ChatMeshAPI
import MeshRPC

/// Which adapter sends each kind of reply (R-CONV-9); nil: no provider configured.
public struct ReplyAdapters: Sendable {
    /// Facebook inbox replies and private replies to comments (the Send API).
    public var messenger: (any ReplyAdapter)?
    /// Public replies under Facebook comments (the Graph API's comment edge).
    public var facebookComments: (any ReplyAdapter)?
    /// Zalo OA consultation messages.
    public var zalo: (any ReplyAdapter)?

    public init(messenger: (any ReplyAdapter)? = nil, facebookComments: (any ReplyAdapter)? = nil, zalo: (any ReplyAdapter)? = nil) {
        self.messenger = messenger
        self.facebookComments = facebookComments
        self.zalo = zalo
    }

    public static var sandbox: ReplyAdapters {
        ReplyAdapters(messenger: SandboxReplyAdapter(), facebookComments: SandboxReplyAdapter(), zalo: SandboxReplyAdapter())
    }

    func adapter(_ platform: Page.Platform, _ target: ChatMessage.Target) -> (any ReplyAdapter)? {
        switch (platform, target) {
        case (.facebook, .inbox), (.facebook, .commentPrivate): messenger
        case (.facebook, .commentPublic): facebookComments
        case (.zalo, .inbox): zalo
        default: nil
        }
    }
}

/// Delivers staff replies for conversation-svc (DeliverReply): the platform's window,
/// then at most one platform call per delivery key, its answer recorded before it is given.
public struct ReplySender: Sendable {
    let store: MessagingStore
    let adapters: ReplyAdapters
    let zaloWindowMs: Int64
    let now: @Sendable () -> Int64

    public init(
        store: MessagingStore, adapters: ReplyAdapters, zaloWindowMs: Int64 = ReplyDelivery.defaultZaloWindowMs,
        now: @escaping @Sendable () -> Int64 = WallClock.nowMs
    ) {
        self.store = store
        self.adapters = adapters
        self.zaloWindowMs = zaloWindowMs
        self.now = now
    }

    public func deliver(_ request: DeliverReplyRequest) async throws -> ReplyDelivery.Outcome {
        let adapter = adapters.adapter(request.platform, request.target)
        let platformName = adapter?.platformName ?? request.platform.protoName.capitalized
        let permission = ReplyDelivery.permission(request, nowMs: now(), zaloWindowMs: zaloWindowMs)
        let step = try await store.beginReply(shop: request.shopId, key: request.deliveryKey, nowMs: now()) { recorded in
            let step = ReplyDelivery.next(recorded, target: request.target, platform: platformName)
            guard case .call = step else { return step }
            if case .refused(let reason) = permission { return .answer(.failed(reason: reason)) }
            if adapter == nil {
                return .answer(.failed(reason: "messaging-svc has no provider for \(request.platform.protoName) \(request.target.protoName) replies (CHATMESH_REPLY_PROVIDERS)"))
            }
            return step
        }
        guard case .call = step, let adapter, case .send(let humanAgent) = permission else {
            if case .answer(let outcome) = step { return outcome }
            throw RPCError.internal("a reply step with nothing to do")
        }
        var reply = ReplyDelivery.Reply(request)
        reply.humanAgent = humanAgent
        let outcome: ReplyDelivery.Outcome
        switch await adapter.send(reply) {
        case .sent(let id): outcome = .sent(platformMessageId: id)
        case .refused(let reason): outcome = .failed(reason: reason)
        case .temporary(let reason, let afterMs): outcome = .retry(reason: reason, afterMs: afterMs)
        // The interrupted attempt before this one had gone through; its id was never recorded.
        case .alreadyReplied: outcome = .sent(platformMessageId: "")
        }
        try await store.finishReply(shop: request.shopId, key: request.deliveryKey, outcome, nowMs: now())
        return outcome
    }
}
