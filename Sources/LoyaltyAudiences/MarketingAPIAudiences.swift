import ChatMeshAPI
import Foundation
import Loyalty
import MeshHTTPClient
import MeshRPC
import NIOCore
import NIOHTTP1

/// Facebook's Marketing API for custom audiences (R-SEG-3):
/// - `POST <graph>/act_<ad account>/customaudiences` (name, subtype CUSTOM,
///   customer_file_source USER_PROVIDED_ONLY) answers the audience's `id`;
/// - `POST` / `DELETE <graph>/<audience>/users` with `payload` {schema ["PHONE", "EMAIL"],
///   data: rows of hashes} and `session` {session_id, batch_seq, last_batch_flag,
///   estimated_num_total} adds or removes a batch of at most 10,000.
/// The token goes as `access_token`; only hashes are ever in a body.
public struct MarketingAPIAudiences: AudiencePlatform {
    let endpoint: URL
    let client: HTTP1Client
    let timeout: TimeAmount

    public init(endpoint: URL, client: HTTP1Client = HTTP1Client(), timeout: TimeAmount = .seconds(60)) {
        self.endpoint = endpoint
        self.client = client
        self.timeout = timeout
    }

    public func createAudience(adAccountId: String, name: String, token: String) async throws(AudiencePlatformError) -> String {
        let json = try await call(.POST, ["act_" + adAccountId, "customaudiences"], [
            "name": String(name.prefix(200)), "subtype": "CUSTOM", "customer_file_source": "USER_PROVIDED_ONLY",
            "description": "Synced by ChatMesh from a customer segment",
        ], token: token)
        guard let id = json["id"] as? String, !id.isEmpty else { throw .temporary("Facebook answered no audience id", retryAfterMs: 0) }
        return id
    }

    public func send(_ batch: AudienceBatch, audienceId: String, token: String) async throws(AudiencePlatformError) {
        let body: [String: Any] = [
            "payload": ["schema": ["PHONE", "EMAIL"], "data": batch.rows.map { [$0.phoneHash, $0.emailHash] }],
            "session": [
                "session_id": batch.sessionId, "batch_seq": batch.sequence, "last_batch_flag": batch.last, "estimated_num_total": batch.estimatedTotal,
            ],
        ]
        _ = try await call(batch.kind == .add ? .POST : .DELETE, [audienceId, "users"], body, token: token)
    }

    func call(_ method: HTTPMethod, _ path: [String], _ body: [String: Any], token: String) async throws(AudiencePlatformError) -> [String: Any] {
        var url = endpoint
        for part in path { url.appendPathComponent(part) }
        var components = URLComponents(url: url, resolvingAgainstBaseURL: false)!
        components.queryItems = [URLQueryItem(name: "access_token", value: token)]
        let response: HTTP1Client.Response
        do {
            let data = try JSONSerialization.data(withJSONObject: body, options: [.sortedKeys])
            response = try await client.send(
                method: method, url: components.url!, headers: [("Content-Type", "application/json")], body: Array(data), timeout: timeout
            )
        } catch {
            throw .temporary("Facebook could not be reached: \(error)", retryAfterMs: 0)
        }
        let json = (try? JSONSerialization.jsonObject(with: Data(response.body))) as? [String: Any]
        if (200..<300).contains(response.status), let json { return json }
        throw Self.failure(response, json: json)
    }

    /// The Graph API's error, in words a shop understands.
    static func failure(_ response: HTTP1Client.Response, json: [String: Any]?) -> AudiencePlatformError {
        let retry = response.retryAfterMs
        guard let error = json?["error"] as? [String: Any], let code = error["code"] as? Int else {
            if response.status == 429 || response.status >= 500 { return .temporary("Facebook is unavailable (HTTP \(response.status))", retryAfterMs: retry) }
            return .refused("Facebook answered HTTP \(response.status) without saying why")
        }
        let said = (error["message"] as? String).map { " (Facebook: \($0))" } ?? ""
        switch code {
        case 4, 17, 32, 613, 80003:
            return .temporary("rate limited: Facebook is limiting this ad account's audience updates for now\(said)", retryAfterMs: retry)
        case 1, 2:
            return .temporary("Facebook had a temporary problem\(said)", retryAfterMs: retry)
        case 190, 102:
            return .refused("the ad account's access token has expired or was revoked: link the ad account again\(said)")
        case 10, 200, 294, 275:
            return .refused("the token may not manage this ad account's audiences (ads_management): check the ad account and its permissions\(said)")
        case 2650:
            return .refused("the custom audience terms are not accepted for this ad account: accept them in Ads Manager\(said)")
        default:
            return .refused("Facebook refused the audience update (error \(code))\(said)")
        }
    }
}

/// Which ads platform loyalty-svc syncs audiences to: CHATMESH_ADS_PROVIDER `sandbox` (the default:
/// nothing leaves) or `facebook` (CHATMESH_MARKETING_API_URL, https://graph.facebook.com/v19.0 by default).
public enum AudienceConfiguration {
    public static func platform(_ env: [String: String], client: HTTP1Client = HTTP1Client()) throws(ConfigurationError) -> any AudiencePlatform {
        switch env["CHATMESH_ADS_PROVIDER"] ?? "sandbox" {
        case "sandbox": return SandboxAudiencePlatform()
        case "facebook":
            let text = env["CHATMESH_MARKETING_API_URL"].flatMap { $0.isEmpty ? nil : $0 } ?? "https://graph.facebook.com/v19.0"
            guard let url = URL(string: text), let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https", url.host != nil else {
                throw ConfigurationError("CHATMESH_MARKETING_API_URL=\(text): not an http(s) URL")
            }
            return MarketingAPIAudiences(endpoint: url, client: client)
        case let other: throw ConfigurationError("CHATMESH_ADS_PROVIDER=\(other): expected sandbox or facebook")
        }
    }
}
