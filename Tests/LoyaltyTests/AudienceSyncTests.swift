import ChatMeshAPI
import Foundation
@testable import Loyalty
import LoyaltyAudiences
import MeshRPC
import MeshStore
import MeshTestSupport
import Testing
import VietnamCommerce

/// R-SEG-3: a segment kept as a Facebook custom audience. The rules alone, then the runner
/// against a local server speaking the Marketing API (create, add, remove, sessions, an
/// expired token, a rate limit), through the RPCs staff use.
@Suite struct AudienceSyncTests {
    static let shop = LoyaltyHarness.shop

    @Test func phonesAndEmailsAreNormalisedAndHashed() {
        let hoa = AudienceRules.Identity(phone: "0912 345 678", email: "  Hoa@Gmail.com ")
        // sha256("84912345678") and sha256("hoa@gmail.com"), computed elsewhere.
        #expect(hoa?.phoneHash == "25cc2f7574420a2d46c9f2d6cf94cdbb242ef7d479afe92ed6e8eb33a7493093")
        #expect(hoa?.emailHash == "74cc6442360cbb6aa567c40dc30dd7f8cdac3c162b3db40fd393292772e7fb38")
        #expect(AudienceRules.Identity(phone: "+84 912345678", email: "")?.phoneHash == hoa?.phoneHash)
        #expect(AudienceRules.Identity(phone: "", email: "hoa@gmail.com")?.phoneHash == "")
        #expect(AudienceRules.Identity(phone: "12345", email: "not an address") == nil)
    }

    @Test func theWalkFindsWhoJoinedWhoLeftAndWhoChanged() {
        let a = AudienceRules.Identity(phoneHash: "a", emailHash: "")
        let b = AudienceRules.Identity(phoneHash: "b", emailHash: "")
        func member(_ id: String, _ identity: AudienceRules.Identity?) -> AudienceRules.Member { AudienceRules.Member(customerId: id, identity: identity) }
        var step = AudienceRules.step(current: member("c1", a), sent: member("c2", b))
        #expect(step.changes == [.add(customerId: "c1", a)] && step.takesCurrent && !step.takesSent)
        step = AudienceRules.step(current: member("c3", a), sent: member("c2", b))
        #expect(step.changes == [.remove(customerId: "c2", b)] && step.takesSent && !step.takesCurrent)
        step = AudienceRules.step(current: member("c2", a), sent: member("c2", a))
        #expect(step.changes.isEmpty && step.takesCurrent && step.takesSent)
        step = AudienceRules.step(current: member("c2", a), sent: member("c2", b))
        #expect(step.changes == [.remove(customerId: "c2", b), .add(customerId: "c2", a)])
        step = AudienceRules.step(current: member("c2", nil), sent: member("c2", b))
        #expect(step.changes == [.remove(customerId: "c2", b)] && step.skipped)
        step = AudienceRules.step(current: member("c9", nil), sent: nil)
        #expect(step.changes.isEmpty && step.skipped && step.takesCurrent)
        #expect(AudienceRules.step(current: nil, sent: nil) == AudienceRules.Step())
    }

    @Test func aSealedTokenOpensOnlyForItsShopAndKey() throws {
        let sealer = AdTokenSealer(authKey: "k1")
        let sealed = try sealer.seal("EAAG-secret", shop: "shop-a")
        #expect(!sealed.contains("EAAG") && sealer.open(sealed, shop: "shop-a") == "EAAG-secret")
        #expect(sealer.open(sealed, shop: "shop-b") == nil && AdTokenSealer(authKey: "k2").open(sealed, shop: "shop-a") == nil)
    }

    static let graphOK = #"{"audience_id":"aud_1","session_id":"1","num_received":2,"num_invalid_entries":0}"#

    func owner(_ h: LoyaltyHarness) -> LoyaltyService.Client {
        let token = TokenSigner(key: LoyaltyHarness.key).mint(shopId: Self.shop, staffId: "owner-1", role: .owner)
        return LoyaltyService.Client(channel: InProcessChannel(router: h.router), defaultOptions: .bearer(token))
    }

    func profile(_ h: LoyaltyHarness, _ customer: String, phone: String, email: String, tagged: Bool) async throws {
        try await h.store.upsertProfile(
            shop: Self.shop, customerId: customer, phone: phone, name: customer, email: email, birthday: nil,
            tagKeys: tagged ? [TagName.key("Hết hàng")] : [], nowMs: h.clock.now
        )
    }

    @Test func aSegmentSyncsInSessionBatchesThenOnlyWhoJoinedAndLeft() async throws {
        try await LoyaltyHarness.run { h in
            let server = try await ScriptedHTTPServer.start()
            let runner = AudienceSyncRunner(
                store: h.store, platform: MarketingAPIAudiences(endpoint: server.url, timeout: .seconds(10)),
                sealer: AdTokenSealer(authKey: LoyaltyHarness.key), batchSize: 2, now: { h.clock.now }
            )
            let owner = owner(h)
            let phones = ["c1": "0912000001", "c2": "0912000002", "c4": "0912000004", "c5": ""]
            let emails = ["c1": "", "c2": "c2@shop.vn", "c4": "", "c5": "c5@shop.vn"]
            for customer in ["c1", "c2", "c4", "c5"] {
                try await profile(h, customer, phone: phones[customer]!, email: emails[customer]!, tagged: true)
            }
            try await profile(h, "c3", phone: "", email: "", tagged: true)  // nothing to match: skipped
            try await profile(h, "c6", phone: "0912000006", email: "", tagged: false)
            let segment = try await owner.createSegment(CreateSegmentRequest(
                shopId: Self.shop, name: "Hết hàng", match: .all, conditions: [SegmentCondition(kind: .hasTag, tag: "Hết hàng")]
            ))
            let request = SyncSegmentAudienceRequest(shopId: Self.shop, segmentId: segment.segmentId)
            do {
                _ = try await owner.syncSegmentAudience(request)
                Issue.record("no ad account linked yet")
            } catch let error as RPCError {
                #expect(error.code == .failedPrecondition)
            }
            await #expect(throws: RPCError.self) {
                try await h.client.linkAdAccount(LinkAdAccountRequest(shopId: Self.shop, adAccountId: "123", accessToken: "EAAG-secret"))
            }
            let account = try await owner.linkAdAccount(LinkAdAccountRequest(shopId: Self.shop, adAccountId: "act_123", accessToken: "EAAG-secret"))
            #expect(account.adAccountId == "123")
            #expect(try await owner.syncSegmentAudience(request).status == .pending)

            server.json(200, #"{"id":"aud_1"}"#)
            server.json(200, Self.graphOK)
            server.json(200, Self.graphOK)
            #expect(try await runner.runDue() == 1)
            var sync = try await h.client.getAudienceSync(SegmentRequest(shopId: Self.shop, segmentId: segment.segmentId))
            #expect(sync.status == .synced && sync.audienceId == "aud_1" && sync.error.isEmpty)
            #expect((sync.uploaded, sync.removed, sync.skipped, sync.audienceSize) == (4, 0, 1, 4))
            #expect(sync.schedule == .daily && sync.nextRunAtMs == h.clock.now + AudienceSyncRunner.dayMs)
            var requests = server.requests
            #expect(requests.map { "\($0.method) \($0.uri)" } == [
                "POST /act_123/customaudiences?access_token=EAAG-secret", "POST /aud_1/users?access_token=EAAG-secret",
                "POST /aud_1/users?access_token=EAAG-secret",
            ])
            #expect(requests[0].json["customer_file_source"] as? String == "USER_PROVIDED_ONLY")
            let sessions = requests.dropFirst().map { $0.json["session"] as? [String: Any] ?? [:] }
            #expect(sessions.map { $0["batch_seq"] as? Int } == [1, 2] && sessions.map { $0["last_batch_flag"] as? Bool } == [false, true])
            #expect(Set(sessions.map { "\($0["session_id"] ?? "")" }).count == 1)
            let rows = requests.dropFirst().flatMap { (($0.json["payload"] as? [String: Any])?["data"] as? [[String]]) ?? [] }
            #expect(rows.count == 4 && rows.allSatisfy { $0.count == 2 && $0.allSatisfy { $0.isEmpty || $0.count == 64 } })
            #expect(rows.contains(["25cc2f7574420a2d46c9f2d6cf94cdbb242ef7d479afe92ed6e8eb33a7493093", ""]) == false)
            // No plain identifier leaves the process.
            let bodies = requests.map { String(decoding: $0.body, as: UTF8.self) }.joined()
            for plain in ["0912000001", "84912000001", "912000002", "c2@shop.vn", "c5@shop.vn"] {
                #expect(!bodies.contains(plain), "\(plain) was sent")
            }

            // A day on: c1 left, c6 joined, c2's e-mail changed. Only they are sent: removals, then additions.
            try await profile(h, "c1", phone: phones["c1"]!, email: "", tagged: false)
            try await profile(h, "c6", phone: "0912000006", email: "", tagged: true)
            try await profile(h, "c2", phone: phones["c2"]!, email: "moi@shop.vn", tagged: true)
            h.clock.advance(ms: AudienceSyncRunner.dayMs)
            server.json(200, Self.graphOK)
            server.json(200, Self.graphOK)
            #expect(try await runner.runDue() == 1)
            requests = Array(server.requests.dropFirst(3))
            #expect(requests.map(\.method) == ["DELETE", "POST"])
            #expect(requests.map { (($0.json["payload"] as? [String: Any])?["data"] as? [[String]])?.count } == [2, 2])
            sync = try await h.client.getAudienceSync(SegmentRequest(shopId: Self.shop, segmentId: segment.segmentId))
            #expect((sync.status, sync.uploaded, sync.removed, sync.audienceSize) == (.synced, 2, 2, 4))
            #expect(try await runner.runDue() == 0)  // nothing due until tomorrow

            // An expired token stops the run with the words to act on; a rate limit comes back when Facebook allows.
            try await profile(h, "c4", phone: phones["c4"]!, email: "", tagged: false)
            _ = try await owner.syncSegmentAudience(request)
            server.json(400, #"{"error":{"message":"Error validating access token: Session has expired","type":"OAuthException","code":190}}"#)
            #expect(try await runner.runDue() == 1)
            sync = try await h.client.getAudienceSync(SegmentRequest(shopId: Self.shop, segmentId: segment.segmentId))
            #expect(sync.status == .failed && sync.error.contains("access token has expired") && sync.removed == 0 && sync.audienceSize == 4)
            _ = try await owner.syncSegmentAudience(request)
            server.json(400, #"{"error":{"message":"Too many calls","code":80003}}"#, headers: [("Retry-After", "120")])
            #expect(try await runner.runDue() == 1)
            sync = try await h.client.getAudienceSync(SegmentRequest(shopId: Self.shop, segmentId: segment.segmentId))
            #expect(sync.status == .failed && sync.error.hasPrefix("rate limited") && sync.nextRunAtMs == h.clock.now + 120_000)
            h.clock.advance(ms: 120_000)
            server.json(200, Self.graphOK)
            #expect(try await runner.runDue() == 1)
            sync = try await h.client.getAudienceSync(SegmentRequest(shopId: Self.shop, segmentId: segment.segmentId))
            #expect((sync.status, sync.removed, sync.audienceSize) == (.synced, 1, 3))
            #expect(server.requests.allSatisfy { !String(decoding: $0.body, as: UTF8.self).contains("EAAG") })
            try await server.stop()
        }
    }
}
