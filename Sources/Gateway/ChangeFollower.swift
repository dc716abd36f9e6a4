import ChatMeshAPI
import Logging
import MeshRPC
import Synchronization

/// R-PANEL-4: follows one service's change feed (WatchChanges for every shop, with
/// a service token) into the hub, for the whole gateway process. When the stream
/// fails it reports the feed down and tries again (100 ms, doubling to 2 s),
/// resuming after the last position it saw, so nothing committed meanwhile is missed.
public struct ChangeFollower: Sendable {
    /// How a follower opens its service's WatchChanges: from a position, with a token, handing each response on; returns when the stream ends.
    public typealias Subscribe = @Sendable (_ after: Int64, _ token: String, _ receive: @Sendable (WatchChangesResponse) -> Void) async throws -> Void

    let feed: PanelFeed
    let hub: PanelWatchHub
    let token: @Sendable () -> String
    let subscribe: Subscribe
    let logger: Logger

    public init(feed: PanelFeed, hub: PanelWatchHub, token: @escaping @Sendable () -> String, logger: Logger, subscribe: @escaping Subscribe) {
        self.feed = feed
        self.hub = hub
        self.token = token
        self.subscribe = subscribe
        self.logger = logger
    }

    /// Follows conversation-, order- or loyalty-svc through `channel`.
    public static func following(_ feed: PanelFeed, channel: any RPCChannel, hub: PanelWatchHub, token: @escaping @Sendable () -> String, logger: Logger) -> ChangeFollower {
        ChangeFollower(feed: feed, hub: hub, token: token, logger: logger) { after, token, receive in
            let request = WatchChangesRequest(shopId: Principal.anyShop, afterPosition: after)
            let options = CallOptions(authorization: "Bearer " + token)
            let read: @Sendable (RPCMessageStream<WatchChangesResponse>) async throws -> Void = { stream in
                for try await response in stream { receive(response) }
            }
            switch feed {
            case .conversation: try await ConversationService.Client(channel: channel).watchChanges(request, options: options, read)
            case .order: try await OrderService.Client(channel: channel).watchChanges(request, options: options, read)
            case .loyalty: try await LoyaltyService.Client(channel: channel).watchChanges(request, options: options, read)
            }
        }
    }

    /// Follows until the task is cancelled.
    public func run() async {
        let cursor = Cursor()
        var backoff = Duration.milliseconds(100)
        while !Task.isCancelled {
            cursor.started()
            do {
                try await subscribe(cursor.position, token()) { response in
                    if cursor.takeFirst() {
                        hub.up(feed, position: response.position, resumed: cursor.position > 0)
                    } else if response.reset {
                        hub.reset(feed, through: response.position)
                    } else {
                        hub.deliver(feed, response.changes, through: response.position)
                    }
                    cursor.position = response.position
                }
                if Task.isCancelled { break }
                logger.warning("change feed ended", metadata: ["feed": "\(feed)"])
            } catch {
                if Task.isCancelled { break }
                logger.warning("change feed failed", metadata: ["feed": "\(feed)", "error": "\(error)"])
            }
            if cursor.wasLive {
                backoff = .milliseconds(100)
                hub.down(feed)
            } else {
                hub.unreachable(feed)
            }
            try? await Task.sleep(for: backoff)
            backoff = min(backoff * 2, .seconds(2))
        }
    }
}

/// Where a follower is: its own task and the stream's reads take turns with it.
private final class Cursor: Sendable {
    private struct State {
        var position: Int64 = 0
        var first = true
        var wasLive = false
    }

    private let state = Mutex(State())

    var position: Int64 {
        get { state.withLock { $0.position } }
        set { state.withLock { $0.position = newValue } }
    }

    var wasLive: Bool { state.withLock { $0.wasLive } }

    func started() {
        state.withLock {
            $0.first = true
            $0.wasLive = false
        }
    }

    func takeFirst() -> Bool {
        state.withLock { state in
            defer {
                state.first = false
                state.wasLive = true
            }
            return state.first
        }
    }
}
