import ChatMeshAPI
import Foundation
import MeshRPC
import VietnamCommerce

/// R-SHIP-1: shipping fees from rate tables kept as data. A fee is the zone's base
/// price for the first `baseWeightG`, a step price for each started `stepG` above
/// it, and a COD fee (a share of the amount collected above a free threshold,
/// never less than a minimum). The zone is where the parcel goes from the sending
/// warehouse: the same district, the same province, the same region (North,
/// Central, South) or across regions.
public struct ShippingRateTable: Codable, Sendable, Hashable {
    /// A carrier service's price for one zone: a first weight step and each step after.
    public struct ZoneRate: Codable, Sendable, Hashable {
        public var baseVnd: Int64
        public var perStepVnd: Int64
        public var etaDays: Int
    }

    /// What collecting cash on delivery costs.
    public struct CodFee: Codable, Sendable, Hashable {
        /// Collected amounts up to this carry no fee.
        public var freeUpToVnd: Int64
        /// Share of the whole amount, in basis points (50 = 0.5%).
        public var basisPoints: Int64
        public var minVnd: Int64
    }

    /// A carrier's service with its zone rates and delivery days.
    public struct Service: Codable, Sendable, Hashable {
        public var carrier: String
        public var service: String
        public var baseWeightG: Int
        public var stepG: Int
        public var maxWeightG: Int
        public var zones: [String: ZoneRate]
        public var cod: CodFee
    }

    public var services: [Service]

    /// Checks what a hand-edited table could get wrong; the message names the place.
    public func validate() throws(RPCError) {
        if services.isEmpty { throw .invalidArgument("shipping rates: no services") }
        for (i, s) in services.enumerated() {
            let at = "services[\(i)] (\(s.carrier) \(s.service))"
            guard Carrier(rawValue: s.carrier) != nil else { throw .invalidArgument("\(at): unknown carrier") }
            guard s.baseWeightG > 0, s.stepG > 0, s.maxWeightG >= s.baseWeightG else { throw .invalidArgument("\(at): weights must be positive, max ≥ base") }
            for zone in ShippingZone.allCases where s.zones[zone.rawValue] == nil {
                throw .invalidArgument("\(at): no rate for zone \(zone.rawValue)")
            }
            if s.zones.values.contains(where: { $0.baseVnd < 0 || $0.perStepVnd < 0 || $0.etaDays < 0 }) || s.cod.basisPoints < 0 || s.cod.minVnd < 0 {
                throw .invalidArgument("\(at): prices and days must not be negative")
            }
        }
    }

    /// A rate table from CHATMESH_SHIPPING_RATES' JSON, checked.
    public static func decode(json: Data) throws -> ShippingRateTable {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        let table = try decoder.decode(ShippingRateTable.self, from: json)
        try table.validate()
        return table
    }

    /// The rates order-svc ships with (list prices of the carriers' standard
    /// services for shops without a contract, rounded); `CHATMESH_SHIPPING_RATES`
    /// names a JSON file of the same shape to replace them.
    public static let standard: ShippingRateTable = {
        // The literal is checked by the tests; a mistake here is a bug, not input.
        try! decode(json: Data(standardJSON.utf8))
    }()

    static let standardJSON = """
    {"services": [
      {"carrier": "GHN", "service": "Chuẩn", "base_weight_g": 500, "step_g": 500, "max_weight_g": 30000,
       "zones": {"same_district": {"base_vnd": 15500, "per_step_vnd": 2500, "eta_days": 1},
                 "same_province": {"base_vnd": 20500, "per_step_vnd": 2500, "eta_days": 1},
                 "same_region": {"base_vnd": 29000, "per_step_vnd": 5000, "eta_days": 2},
                 "cross_region": {"base_vnd": 32000, "per_step_vnd": 5000, "eta_days": 4}},
       "cod": {"free_up_to_vnd": 3000000, "basis_points": 50, "min_vnd": 0}},
      {"carrier": "GHN", "service": "Nhanh", "base_weight_g": 500, "step_g": 500, "max_weight_g": 20000,
       "zones": {"same_district": {"base_vnd": 22000, "per_step_vnd": 3000, "eta_days": 1},
                 "same_province": {"base_vnd": 27000, "per_step_vnd": 3000, "eta_days": 1},
                 "same_region": {"base_vnd": 38000, "per_step_vnd": 7000, "eta_days": 1},
                 "cross_region": {"base_vnd": 45000, "per_step_vnd": 8000, "eta_days": 2}},
       "cod": {"free_up_to_vnd": 3000000, "basis_points": 50, "min_vnd": 0}},
      {"carrier": "GHTK", "service": "Đường bộ", "base_weight_g": 3000, "step_g": 500, "max_weight_g": 20000,
       "zones": {"same_district": {"base_vnd": 16000, "per_step_vnd": 2500, "eta_days": 1},
                 "same_province": {"base_vnd": 22000, "per_step_vnd": 2500, "eta_days": 1},
                 "same_region": {"base_vnd": 30000, "per_step_vnd": 2500, "eta_days": 3},
                 "cross_region": {"base_vnd": 32000, "per_step_vnd": 5000, "eta_days": 5}},
       "cod": {"free_up_to_vnd": 0, "basis_points": 0, "min_vnd": 0}},
      {"carrier": "VIETTEL_POST", "service": "Chuyển phát thường", "base_weight_g": 500, "step_g": 500, "max_weight_g": 50000,
       "zones": {"same_district": {"base_vnd": 16500, "per_step_vnd": 2500, "eta_days": 1},
                 "same_province": {"base_vnd": 22000, "per_step_vnd": 2500, "eta_days": 2},
                 "same_region": {"base_vnd": 30000, "per_step_vnd": 4500, "eta_days": 3},
                 "cross_region": {"base_vnd": 35000, "per_step_vnd": 6000, "eta_days": 5}},
       "cod": {"free_up_to_vnd": 1000000, "basis_points": 80, "min_vnd": 5000}},
      {"carrier": "JT_EXPRESS", "service": "EZ", "base_weight_g": 1000, "step_g": 500, "max_weight_g": 50000,
       "zones": {"same_district": {"base_vnd": 18000, "per_step_vnd": 2000, "eta_days": 1},
                 "same_province": {"base_vnd": 20000, "per_step_vnd": 2000, "eta_days": 1},
                 "same_region": {"base_vnd": 28000, "per_step_vnd": 4000, "eta_days": 2},
                 "cross_region": {"base_vnd": 33000, "per_step_vnd": 5000, "eta_days": 4}},
       "cod": {"free_up_to_vnd": 0, "basis_points": 0, "min_vnd": 0}},
      {"carrier": "NINJA_VAN", "service": "Standard", "base_weight_g": 1000, "step_g": 500, "max_weight_g": 30000,
       "zones": {"same_district": {"base_vnd": 18500, "per_step_vnd": 2500, "eta_days": 1},
                 "same_province": {"base_vnd": 21000, "per_step_vnd": 2500, "eta_days": 2},
                 "same_region": {"base_vnd": 29500, "per_step_vnd": 4000, "eta_days": 3},
                 "cross_region": {"base_vnd": 34000, "per_step_vnd": 5500, "eta_days": 5}},
       "cod": {"free_up_to_vnd": 2000000, "basis_points": 50, "min_vnd": 0}},
      {"carrier": "VNPOST", "service": "Bưu kiện", "base_weight_g": 500, "step_g": 500, "max_weight_g": 30000,
       "zones": {"same_district": {"base_vnd": 15000, "per_step_vnd": 2000, "eta_days": 2},
                 "same_province": {"base_vnd": 19000, "per_step_vnd": 2000, "eta_days": 2},
                 "same_region": {"base_vnd": 27000, "per_step_vnd": 4000, "eta_days": 4},
                 "cross_region": {"base_vnd": 31000, "per_step_vnd": 5000, "eta_days": 6}},
       "cod": {"free_up_to_vnd": 0, "basis_points": 100, "min_vnd": 10000}},
      {"carrier": "BEST_EXPRESS", "service": "Tiêu chuẩn", "base_weight_g": 1000, "step_g": 1000, "max_weight_g": 30000,
       "zones": {"same_district": {"base_vnd": 17000, "per_step_vnd": 4000, "eta_days": 1},
                 "same_province": {"base_vnd": 19000, "per_step_vnd": 4000, "eta_days": 2},
                 "same_region": {"base_vnd": 27000, "per_step_vnd": 6000, "eta_days": 3},
                 "cross_region": {"base_vnd": 31000, "per_step_vnd": 8000, "eta_days": 5}},
       "cod": {"free_up_to_vnd": 0, "basis_points": 0, "min_vnd": 0}}
    ]}
    """
}

/// How far a parcel travels: within a province, a region, or across the country.
public enum ShippingZone: String, Sendable, CaseIterable {
    case sameDistrict = "same_district"
    case sameProvince = "same_province"
    case sameRegion = "same_region"
    case crossRegion = "cross_region"
}

/// A quote as the rules compute it (the store gives it an id and keeps it).
public struct ShippingEstimate: Sendable, Hashable {
    public var carrier: String
    public var service: String
    public var feeVnd: Int64
    public var etaDays: Int
    public var zone: ShippingZone
}

extension ShippingRateTable {
    /// Every service's quote for a parcel, cheapest first; services that cannot carry the weight are left out.
    public func quotes(from: Address, to: Address, weightG: Int, codVnd: Int64) throws(RPCError) -> [ShippingEstimate] {
        guard let fromRegion = VietnamRegion(province: from.province) else {
            throw .failedPrecondition("warehouse_id: the warehouse's province \"\(from.province)\" is not a Vietnamese province")
        }
        guard let toRegion = VietnamRegion(province: to.province) else {
            throw .invalidArgument("to.province: \"\(to.province)\" is not a Vietnamese province")
        }
        let sameProvince = VietnamRegion.provinceKey(from.province) == VietnamRegion.provinceKey(to.province)
        let zone: ShippingZone =
            if sameProvince && VietnamRegion.districtKey(from.district) == VietnamRegion.districtKey(to.district) { .sameDistrict }
            else if sameProvince { .sameProvince }
            else if fromRegion == toRegion { .sameRegion }
            else { .crossRegion }
        var out: [ShippingEstimate] = []
        for service in services where weightG <= service.maxWeightG {
            guard let rate = service.zones[zone.rawValue] else { continue }
            let extra = max(0, weightG - service.baseWeightG)
            let steps = Int64((extra + service.stepG - 1) / service.stepG)
            var fee = rate.baseVnd + steps * rate.perStepVnd
            if codVnd > service.cod.freeUpToVnd && (service.cod.basisPoints > 0 || service.cod.minVnd > 0) {
                fee += max(service.cod.minVnd, codVnd * service.cod.basisPoints / 10_000)
            }
            out.append(ShippingEstimate(carrier: service.carrier, service: service.service, feeVnd: fee, etaDays: rate.etaDays, zone: zone))
        }
        return out.sorted { ($0.feeVnd, $0.etaDays, $0.carrier) < ($1.feeVnd, $1.etaDays, $1.carrier) }
    }
}

/// Vietnam's three regions, by province: the 63 provinces as addresses have long
/// named them and the 34 of the 2025 merger (whose names are among them, plus "Huế").
public enum VietnamRegion: Sendable, Hashable {
    case north, central, south

    public init?(province: String) {
        guard let region = Self.regions[Self.provinceKey(province)] else { return nil }
        self = region
    }

    /// "TP. Hồ Chí Minh", "Thành phố Hồ Chí Minh", "HCM", "Sài Gòn" → "ho chi minh".
    public static func provinceKey(_ province: String) -> String {
        var words = VietnameseText.fold(province).split { !($0.isLetter || $0.isNumber) }.map(String.init)
        if words.count > 2, words[0] == "thanh", words[1] == "pho" { words.removeFirst(2) }
        if words.count > 1, ["tp", "tinh", "t"].contains(words[0]) { words.removeFirst() }
        let key = words.joined(separator: " ")
        return aliases[key] ?? key
    }

    /// "Quận 1", "Q.1", "q1", "quan 1" → "1"; "Huyện Củ Chi" → "cu chi".
    public static func districtKey(_ district: String) -> String {
        var text = VietnameseText.fold(district)
        for prefix in ["quan", "huyen", "thi xa", "thanh pho", "tp", "q", "h", "tx"] where text.hasPrefix(prefix) {
            let rest = text.dropFirst(prefix.count)
            if let next = rest.first, !next.isLetter {
                text = String(rest)
                break
            }
        }
        return text.split { !($0.isLetter || $0.isNumber) }.joined(separator: " ")
    }

    static let aliases: [String: String] = [
        "hcm": "ho chi minh", "tphcm": "ho chi minh", "sai gon": "ho chi minh", "saigon": "ho chi minh", "hcmc": "ho chi minh",
        "hn": "ha noi", "hue": "thua thien hue", "vung tau": "ba ria vung tau", "brvt": "ba ria vung tau", "dak lak": "dak lak",
        "dac lac": "dak lak", "dak nong": "dak nong",
    ]

    static let regions: [String: VietnamRegion] = {
        let north = [
            "ha noi", "hai phong", "quang ninh", "hai duong", "hung yen", "bac ninh", "vinh phuc", "thai binh", "nam dinh", "ha nam", "ninh binh",
            "ha giang", "cao bang", "bac kan", "lang son", "tuyen quang", "thai nguyen", "phu tho", "bac giang", "lao cai", "yen bai", "dien bien",
            "lai chau", "son la", "hoa binh",
        ]
        let central = [
            "thanh hoa", "nghe an", "ha tinh", "quang binh", "quang tri", "thua thien hue", "da nang", "quang nam", "quang ngai", "binh dinh",
            "phu yen", "khanh hoa", "ninh thuan", "binh thuan", "kon tum", "gia lai", "dak lak", "dak nong", "lam dong",
        ]
        let south = [
            "ho chi minh", "binh duong", "dong nai", "ba ria vung tau", "binh phuoc", "tay ninh", "long an", "tien giang", "ben tre", "tra vinh",
            "vinh long", "dong thap", "an giang", "kien giang", "can tho", "hau giang", "soc trang", "bac lieu", "ca mau",
        ]
        var map: [String: VietnamRegion] = [:]
        for name in north { map[name] = .north }
        for name in central { map[name] = .central }
        for name in south { map[name] = .south }
        return map
    }()
}
