import ChatMeshAPI
import Foundation
import MeshRPC
import Orders
import Testing

@Suite struct CarrierTrackingTests {
    @Test func everyCarrierHasItsTrackingPage() {
        let code = "GY7K2Q9X"
        #expect(Carrier.ghn.trackingURL(code: code).url == "https://donhang.ghn.vn/?order_code=GY7K2Q9X")
        #expect(Carrier.ghtk.trackingURL(code: "S123456.HN1.A2.789").url == "https://i.ghtk.vn/S123456%2EHN1%2EA2%2E789")
        #expect(Carrier.jtExpress.trackingURL(code: "852001234567").url == "https://jtexpress.vn/vi/tracking?type=track&billcode=852001234567")
        #expect(Carrier.ninjaVan.trackingURL(code: "NVVNSHOP0001").url == "https://www.ninjavan.co/vi-vn/tracking?id=NVVNSHOP0001")
        #expect(Carrier.vnpost.trackingURL(code: "EP123456789VN").url == "https://vnpost.vn/vi-vn/dinh-vi/buu-pham?key=EP123456789VN")
        #expect(Carrier.bestExpress.trackingURL(code: "66012345678").url == "https://best-inc.vn/track?bills=66012345678")
        // Viettel Post's page takes no code: the bare page, the code is copied.
        let viettel = Carrier.viettelPost.trackingURL(code: "1234567890")
        #expect(viettel == ("https://viettelpost.com.vn/tra-cuu-hanh-trinh-don/", false))
        #expect(Carrier.allCases.filter { !$0.trackingURL(code: code).codeInURL } == [.viettelPost])
        #expect(Carrier.allCases.allSatisfy { $0.trackingURL(code: code).url.hasPrefix("https://") })
    }

    @Test func carriersByTheNamesPeopleUse() {
        #expect(Carrier(named: "J&T Express") == .jtExpress)
        #expect(Carrier(named: "Viettel Post") == .viettelPost)
        #expect(Carrier(named: "giao hàng tiết kiệm") == .ghtk)
        #expect(Carrier(named: "VN Post") == .vnpost)
        #expect(Carrier(named: "GHN") == .ghn)
        #expect(Carrier(named: "Grab") == nil)
        #expect(Carrier.validTrackingCode("GY7K2Q9X"))
        #expect(!Carrier.validTrackingCode("abc"))
        #expect(!Carrier.validTrackingCode("GY7K 2Q9X"))
    }
}

@Suite struct ShippingRatesTests {
    static let warehouse = Address(street: "12 Lý Tự Trọng", ward: "Bến Nghé", district: "Quận 1", province: "TP. Hồ Chí Minh")

    func quote(_ to: Address, weightG: Int = 500, codVnd: Int64 = 0) throws -> [String: ShippingEstimate] {
        let quotes = try ShippingRateTable.standard.quotes(from: Self.warehouse, to: to, weightG: weightG, codVnd: codVnd)
        return Dictionary(uniqueKeysWithValues: quotes.map { ("\($0.carrier)/\($0.service)", $0) })
    }

    @Test func zonesFollowDistrictProvinceAndRegion() throws {
        #expect(try quote(Address(district: "Q.1", province: "Hồ Chí Minh"))["GHN/Chuẩn"]?.zone == .sameDistrict)
        #expect(try quote(Address(district: "quận 1", province: "Sài Gòn"))["GHN/Chuẩn"]?.zone == .sameDistrict)
        #expect(try quote(Address(district: "Quận 7", province: "Thành phố Hồ Chí Minh"))["GHN/Chuẩn"]?.zone == .sameProvince)
        #expect(try quote(Address(district: "Thủ Dầu Một", province: "Bình Dương"))["GHN/Chuẩn"]?.zone == .sameRegion)
        #expect(try quote(Address(district: "Hoàn Kiếm", province: "Hà Nội"))["GHN/Chuẩn"]?.zone == .crossRegion)
        #expect(try quote(Address(district: "Hải Châu", province: "Đà Nẵng"))["GHN/Chuẩn"]?.zone == .crossRegion)
        // "Thanh Hóa" is a province, not "Thành phố Hóa".
        #expect(VietnamRegion(province: "Thanh Hóa") == .central)
        #expect(VietnamRegion(province: "Tỉnh Thừa Thiên Huế") == .central && VietnamRegion(province: "Huế") == .central)
        #expect(VietnamRegion(province: "Bà Rịa - Vũng Tàu") == .south)
        #expect(VietnamRegion(province: "Đắk Lắk") == .central)
        #expect(VietnamRegion(province: "Bangkok") == nil)
    }

    @Test func feesFromWeightStepsAndCODAgainstHandComputedFigures() throws {
        // GHN Chuẩn to Hà Nội: 32,000 for 500 g, + 5,000 per started 500 g: 1,200 g → 2 steps → 42,000.
        #expect(try quote(Address(district: "Ba Đình", province: "Hà Nội"), weightG: 1_200)["GHN/Chuẩn"]?.feeVnd == 42_000)
        // COD 5,000,000 above GHN's free 3,000,000: 0.5% of it, 25,000 → 67,000.
        #expect(try quote(Address(district: "Ba Đình", province: "Hà Nội"), weightG: 1_200, codVnd: 5_000_000)["GHN/Chuẩn"]?.feeVnd == 67_000)
        // GHTK's first 3 kg are the base: 2,900 g in the same province → 22,000; 3,100 g → 24,500.
        #expect(try quote(Address(district: "Quận 3", province: "HCM"), weightG: 2_900)["GHTK/Đường bộ"]?.feeVnd == 22_000)
        #expect(try quote(Address(district: "Quận 3", province: "HCM"), weightG: 3_100)["GHTK/Đường bộ"]?.feeVnd == 24_500)
        // Viettel Post's COD minimum: 1,200,000 × 0.8% = 9,600 → 16,500 + 9,600 same district.
        #expect(try quote(Address(district: "Quận 1", province: "HCM"), codVnd: 1_200_000)["VIETTEL_POST/Chuyển phát thường"]?.feeVnd == 26_100)
        // VNPost charges at least 10,000 of COD: 300,000 × 1% = 3,000 → 10,000.
        #expect(try quote(Address(district: "Quận 1", province: "HCM"), codVnd: 300_000)["VNPOST/Bưu kiện"]?.feeVnd == 25_000)
        // Too heavy for GHN Nhanh (20 kg), not for Viettel Post (50 kg).
        let heavy = try quote(Address(district: "Quận 1", province: "HCM"), weightG: 25_000)
        #expect(heavy["GHN/Nhanh"] == nil && heavy["VIETTEL_POST/Chuyển phát thường"] != nil)
        // Cheapest first.
        let all = try ShippingRateTable.standard.quotes(from: Self.warehouse, to: Address(province: "Hà Nội"), weightG: 800, codVnd: 0)
        #expect(all.map(\.feeVnd) == all.map(\.feeVnd).sorted())
        #expect(Set(all.map(\.carrier)) == Set(Carrier.allCases.map(\.rawValue)))
    }

    @Test func aBadAddressOrTableIsNamed() {
        #expect(throws: RPCError.self) { try ShippingRateTable.standard.quotes(from: Self.warehouse, to: Address(province: "Atlantis"), weightG: 500, codVnd: 0) }
        let broken = Data(#"{"services": [{"carrier": "GHN", "service": "X", "base_weight_g": 500, "step_g": 500, "max_weight_g": 1000, "zones": {}, "cod": {"free_up_to_vnd": 0, "basis_points": 0, "min_vnd": 0}}]}"#.utf8)
        do {
            _ = try ShippingRateTable.decode(json: broken)
            Issue.record("a table without zones was accepted")
        } catch let error as RPCError {
            #expect(error.message.contains("services[0]") && error.message.contains("same_district"))
        } catch {
            Issue.record("\(error)")
        }
    }
}
