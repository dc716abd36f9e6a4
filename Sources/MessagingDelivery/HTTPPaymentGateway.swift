import Crypto
import Foundation
import MeshHTTPClient
import Messaging
import NIOCore

/// A card-on-file charge API of the kind Vietnamese payment gateways offer
/// merchants (Napas, and the wallets' recurring-payment APIs): `POST <endpoint>`
/// with JSON `{merchant_ref, shop_id, amount_vnd}` signed in the
/// `X-Signature` header (hex HMAC-SHA256 of the body with the merchant secret).
/// It answers `{"status": "approved", "transaction_id": …}` or
/// `{"status": "declined", "reason": …}`; the same merchant_ref is charged once.
/// Time-outs, 5xx and 429 are `unavailable`: the next send tries again with the same reference.
public struct HTTPPaymentGateway: PaymentGateway {
    public var name: String { "http" }
    let endpoint: URL
    let secret: [UInt8]
    let client: HTTP1Client
    let timeout: TimeAmount

    public init(endpoint: URL, secret: String, client: HTTP1Client = HTTP1Client(), timeout: TimeAmount = .seconds(20)) {
        self.endpoint = endpoint
        self.secret = Array(secret.utf8)
        self.client = client
        self.timeout = timeout
    }

    public func charge(shop: String, amountVnd: Int64, reference: String) async -> PaymentResult {
        let payload: [String: Any] = ["merchant_ref": reference, "shop_id": shop, "amount_vnd": amountVnd]
        do {
            let body = try JSONSerialization.data(withJSONObject: payload, options: [.sortedKeys])
            let mac = HMAC<SHA256>.authenticationCode(for: body, using: SymmetricKey(data: secret))
            let signature = mac.map { String(format: "%02x", $0) }.joined()
            let response = try await client.send(
                method: .POST, url: endpoint, headers: [("Content-Type", "application/json"), ("X-Signature", signature)], body: Array(body),
                timeout: timeout
            )
            if response.status == 429 || response.status >= 500 {
                return .unavailable(reason: "the payment gateway answered HTTP \(response.status)")
            }
            let json = (try? JSONSerialization.jsonObject(with: Data(response.body))) as? [String: Any]
            switch (response.status, json?["status"] as? String) {
            case (200..<300, "approved"):
                return .approved(transactionId: json?["transaction_id"] as? String ?? "")
            case (_, "declined"):
                return .declined(reason: json?["reason"] as? String ?? "declined")
            default:
                return .declined(reason: "the payment gateway refused the charge: HTTP \(response.status)")
            }
        } catch {
            return .unavailable(reason: "\(error)")
        }
    }
}
