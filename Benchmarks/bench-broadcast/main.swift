import ArgumentParser
import ChatMeshAPI
import Foundation
import Logging
import MeshHTTP2
import MeshRPC

/// The broadcast scale benchmark of messaging-svc (issue 6): a segment of N
/// members served by a stand-in loyalty-svc (ListSegmentMembers over h2c, as
/// the real one will), a broadcast to all of them through a running
/// messaging-svc on the sandbox provider, progress read with GetBroadcast
/// every 100 ms while it runs, and the time from CreateBroadcast to
/// COMPLETED. Exits 1 when the broadcast does not complete or its counts do not add up.
@main
struct BenchBroadcast: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-broadcast", abstract: "Time a broadcast to a large segment through messaging-svc."
    )

    @Option(help: "Members in the segment.") var members = 100_000
    @Option(help: "Where the stand-in loyalty-svc listens (messaging-svc's CHATMESH_LOYALTY_ADDRS).") var loyaltyListen: String
    @Option(help: "The messaging-svc to drive.") var messaging: String
    @Option(help: "Seconds to wait for COMPLETED.") var timeout = 300

    static let shop = "bench-shop"

    func run() async throws {
        let key = MeshEnvironment().authKey
        let signer = TokenSigner(key: key)
        let loyalty = GRPCServer(
            config: try GRPCServer.Config(listen: loyaltyListen),
            router: RPCRouter(services: [SegmentStandIn(count: members)], verifier: TokenVerifier(key: key)),
            logger: Logger(label: "bench-loyalty")
        )
        _ = try await loyalty.start()
        let channel = try HTTP2Channel(addresses: messaging)
        let client = MessagingService.Client(
            channel: channel, defaultOptions: .bearer(signer.mint(shopId: Self.shop, staffId: "bench", role: .owner, validFor: 3_600), timeout: .seconds(30))
        )
        let price: Int64 = 800
        _ = try await client.topUp(TopUpRequest(shopId: Self.shop, amountVnd: Int64(members) * price, paymentRef: "bench-\(UUID().uuidString)"))
        let template = try await client.createTemplate(CreateTemplateRequest(
            shopId: Self.shop, channel: .sms, name: "Khuyến mãi", body: "Chào {{name}}, {{shop}} tặng bạn mã {{code}} giảm 20%.", purpose: .marketing
        ))
        let started = ContinuousClock.now
        let created = try await client.createBroadcast(CreateBroadcastRequest(
            shopId: Self.shop, channel: .sms, templateId: template.templateId, segmentId: "everyone",
            params: ["shop": "Shop Hoa", "code": "SALE20"], idempotencyKey: "bench-\(UUID().uuidString)"
        ))
        var last = created
        var progressSeen = false
        var polls = 0
        // Polled every 100 ms (so the end is timed to within that), printed every second.
        while ContinuousClock.now - started < .seconds(timeout) {
            try await Task.sleep(for: .milliseconds(100))
            polls += 1
            last = try await client.getBroadcast(BroadcastRequest(shopId: Self.shop, broadcastId: created.broadcastId))
            if last.status == .running, last.sent > 0, last.sent < last.total { progressSeen = true }
            let finished = last.status != .running && last.status != .scheduled
            if polls % 10 == 0 || finished {
                let elapsed = Double((ContinuousClock.now - started).components.seconds) + Double((ContinuousClock.now - started).components.attoseconds) / 1e18
                print(String(format: "  %5.1f s  %@  total %d  sent %d  failed %d  skipped %d  cost %lld VND", elapsed, last.status.protoName,
                             last.total, last.sent, last.failed, last.skipped, last.costVnd))
            }
            if finished { break }
        }
        let seconds = Double((ContinuousClock.now - started).components.seconds) + Double((ContinuousClock.now - started).components.attoseconds) / 1e18
        await channel.close()
        await loyalty.shutdownGracefully()
        let addsUp = last.total == Int32(members) && last.sent + last.failed + last.skipped == last.total && last.costVnd == Int64(last.sent) * price
        print(String(format: "broadcast %@: %d recipients, %d sent, %d failed, %d skipped, %lld VND, in %.1f s (%.0f messages/s; progress seen while running: %@)",
                     last.broadcastId, last.total, last.sent, last.failed, last.skipped, last.costVnd, seconds, Double(last.sent) / seconds,
                     progressSeen ? "yes" : "no"))
        print("broadcast_id=\(last.broadcastId)")
        guard last.status == .completed, addsUp else {
            print("bench-broadcast: the broadcast did not complete with counts that add up")
            throw ExitCode(1)
        }
    }
}

/// loyalty-svc's ListSegmentMembers over a made-up segment: member i has phone
/// 09xxxxxxxx and name "Khách i"; pages are offsets.
struct SegmentStandIn: RPCService {
    let count: Int

    var routes: [RPCRoute] {
        [RPCRoute.unary(LoyaltyService.Method.listSegmentMembers) { (request: ListSegmentMembersRequest, _) in
            guard request.segmentId == "everyone" else { throw RPCError.notFound("segment_id: no segment \(request.segmentId)") }
            let start = Int(request.pageToken) ?? 0
            let end = min(count, start + max(1, Int(request.pageSize)))
            return ListSegmentMembersResponse(
                members: (start..<end).map { i in
                    SegmentMember(customerId: "cu_\(i)", phone: String(format: "09%08d", i), name: "Khách \(i)", email: "")
                },
                nextPageToken: end < count ? String(end) : ""
            )
        }]
    }
}
