import ArgumentParser
import ChatMeshAPI
import Foundation
import MeshHTTP2
import MeshRPC

/// `chatmesh events`: the outboxes of order-svc and conversation-svc — what waits
/// for which subscriber and how far it lags, the dead events, and their replay.
struct EventsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "events",
        abstract: "Show the cross-service event outboxes: backlog and lag per subscriber, dead events (--dead), replay (--replay).",
        discussion: """
            Without flags: each producing service's queues (pending, retrying, dead, lag, whether the subscriber is reachable).
            --dead lists the dead events; --replay puts them back in their queues (all of the shop's, or those named by --event-id).
            """
    )

    enum Producer: String, ExpressibleByArgument, CaseIterable {
        case order, conversation
    }

    @Option(help: "The shop.")
    var shop: String = "demo-shop"

    @Option(help: "Only this producing service: order or conversation (default: both).")
    var service: Producer?

    @Option(help: "Only this subscriber's queue (loyalty, loyalty-profile, messaging, replies).")
    var subscriber: String?

    @Flag(help: "List the dead events.")
    var dead = false

    @Flag(help: "Put dead events back in their queues with fresh attempts.")
    var replay = false

    @Option(name: .customLong("event-id"), help: "With --replay: only this event (repeatable).")
    var eventIds: [String] = []

    @Flag(help: "Print JSON for scripts.")
    var json = false

    @Option(help: "order-svc address (default: CHATMESH_ORDER_ADDRS or \(MeshEnvironment.defaultAddress(of: "order"))).")
    var order: String?

    @Option(help: "conversation-svc address (default: CHATMESH_CONVERSATION_ADDRS or \(MeshEnvironment.defaultAddress(of: "conversation"))).")
    var conversation: String?

    func validate() throws {
        if dead && replay { throw ValidationError("--dead and --replay are separate steps: list first, then replay") }
        if !eventIds.isEmpty && !replay { throw ValidationError("--event-id goes with --replay") }
    }

    func run() async throws {
        let env = MeshEnvironment()
        let token = TokenSigner(key: env.authKey).mint(shopId: shop, staffId: "cli", role: .owner, validFor: 300)
        var report: [[String: Any]] = []
        let printer = Printer()
        for producer in service.map({ [$0] }) ?? Producer.allCases {
            let address = (producer == .order ? order : conversation) ?? env.addresses(of: producer.rawValue)
            let channel = try HTTP2Channel(addresses: address)
            let client = OutboxService.Client(channel: channel, defaultOptions: .bearer(token, timeout: .seconds(10)))
            let outcome: Result<[String: Any], any Error>
            do {
                outcome = .success(try await visit("\(producer.rawValue)-svc", client, printer))
            } catch {
                outcome = .failure(error)
            }
            await channel.close()
            report.append(try outcome.get())
        }
        if json {
            let data = try JSONSerialization.data(withJSONObject: report, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        }
    }

    func visit(_ name: String, _ client: OutboxService.Client, _ printer: Printer) async throws -> [String: Any] {
        if replay {
            let answer = try PanelCommand.answer(await rpcResult { () throws(RPCError) in
                try await client.replayDeadEvents(ReplayDeadEventsRequest(shopId: shop, subscriber: subscriber ?? "", eventIds: eventIds))
            })
            if !json { print("\(name): \(answer.replayed) dead event\(answer.replayed == 1 ? "" : "s") put back in their queues") }
            return ["service": name, "replayed": answer.replayed]
        }
        if dead {
            var events: [DeadEvent] = []
            var pageToken = ""
            repeat {
                let page = try PanelCommand.answer(await rpcResult { () throws(RPCError) in
                    try await client.listDeadEvents(ListDeadEventsRequest(shopId: shop, subscriber: subscriber ?? "", pageSize: 500, pageToken: pageToken))
                })
                events += page.events
                pageToken = page.nextPageToken
            } while !pageToken.isEmpty
            if !json {
                print(printer.heading("\(name): \(events.count) dead event\(events.count == 1 ? "" : "s")"))
                let rows = events.map { e in [e.eventId, e.subscriber, e.kind, e.customerId, "\(e.attempts)", String(e.lastError.prefix(60))] }
                if !rows.isEmpty { print(Printer.table([["event", "subscriber", "kind", "customer", "attempts", "last error"]] + rows, rightAligned: [4])) }
            }
            return ["service": name, "dead": events.map { e -> [String: Any] in
                ["event_id": e.eventId, "subscriber": e.subscriber, "kind": e.kind, "customer_id": e.customerId, "attempts": e.attempts,
                 "last_error": e.lastError, "created_at_ms": e.createdAtMs, "last_attempt_at_ms": e.lastAttemptAtMs]
            }]
        }
        let status = try PanelCommand.answer(await rpcResult { () throws(RPCError) in
            try await client.getOutboxStatus(GetOutboxStatusRequest(shopId: shop))
        })
        let queues = status.queues.filter { subscriber == nil || $0.subscriber == subscriber }
        if !json {
            print(printer.heading(status.service))
            let rows = queues.map { q in
                [q.subscriber, "\(q.pending)", "\(q.retrying)", "\(q.dead)", Self.age(q.oldestPendingAgeMs), q.reachable ? "yes" : "NO", String(q.lastError.prefix(60))]
            }
            print(Printer.table([["subscriber", "pending", "retrying", "dead", "lag", "reachable", "last error"]] + rows, rightAligned: [1, 2, 3, 4]))
        }
        return ["service": status.service, "queues": queues.map { q -> [String: Any] in
            ["subscriber": q.subscriber, "pending": q.pending, "retrying": q.retrying, "dead": q.dead, "oldest_pending_age_ms": q.oldestPendingAgeMs,
             "reachable": q.reachable, "last_error": q.lastError, "last_delivered_at_ms": q.lastDeliveredAtMs]
        }]
    }

    static func age(_ ms: Int64) -> String {
        guard ms > 0 else { return "-" }
        if ms < 1000 { return "\(ms)ms" }
        let seconds = ms / 1000
        if seconds < 120 { return "\(seconds)s" }
        return seconds < 7200 ? "\(seconds / 60)m" : "\(seconds / 3600)h"
    }
}
