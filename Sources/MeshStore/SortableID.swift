import Foundation
import MeshRPC
import Synchronization

/// Record ids: a prefix naming the kind ("cv_", "tag_"), then 48 bits of
/// milliseconds and 64 bits of entropy in Crockford base 32, so ids sort by
/// creation time (lists page by id without a second column) and can be made
/// by any replica without asking the database.
///
/// Within one process ids are strictly increasing: an id made in the same
/// millisecond as the last (or with a clock that went back) continues from the
/// last one's entropy plus one, so records made in one burst keep their order.
public enum SortableID {
    private static let alphabet = Array("0123456789abcdefghjkmnpqrstvwxyz".utf8)
    private static let last = Mutex<(ms: UInt64, entropy: UInt64)>((0, 0))

    /// A new id: `prefix`, the millisecond, then a random count that goes up within it, so ids made later sort after.
    public static func make(_ prefix: String, nowMs: Int64 = WallClock.nowMs()) -> String {
        let (ms, entropy) = last.withLock { last -> (UInt64, UInt64) in
            let now = UInt64(max(0, nowMs)) & 0xFFFF_FFFF_FFFF
            if now > last.ms {
                // Room below the top so the same millisecond can count up without wrapping.
                last = (now, UInt64.random(in: 0...(UInt64.max >> 1)))
            } else if last.entropy == UInt64.max {
                last = (last.ms + 1, 0)
            } else {
                last.entropy += 1
            }
            return last
        }
        var bytes = [UInt8](repeating: 0, count: 23)
        var time = ms
        for i in stride(from: 9, through: 0, by: -1) {
            bytes[i] = alphabet[Int(time & 31)]
            time >>= 5
        }
        // 13 digits of 5 bits hold 65 bits: the top digit is the entropy's top bit.
        var noise = entropy
        for i in stride(from: 22, through: 10, by: -1) {
            bytes[i] = alphabet[Int(noise & 31)]
            noise >>= 5
        }
        return prefix + String(decoding: bytes, as: UTF8.self)
    }
}
