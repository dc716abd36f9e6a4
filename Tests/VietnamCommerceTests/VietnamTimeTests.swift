import Foundation
import Testing
import VietnamCommerce

@Suite struct VietnamTimeTests {
    @Test func daysTurnAtVietnamMidnight() {
        // 2026-11-24 16:59:59.999 UTC is 23:59:59.999 in Vietnam; a millisecond later it is the 25th.
        let midnight = VietnamTime.ms(year: 2026, month: 11, day: 25)
        #expect(midnight == 1_795_539_600_000)  // 2026-11-24T17:00:00Z
        #expect(VietnamTime.dateString(atMs: midnight - 1) == "2026-11-24")
        #expect(VietnamTime.dateString(atMs: midnight) == "2026-11-25")
        #expect(VietnamTime.dayNumber(atMs: midnight) == VietnamTime.dayNumber(atMs: midnight - 1) + 1)
        #expect(VietnamTime.dayNumber(atMs: midnight) == VietnamTime.daysFromCivil(year: 2026, month: 11, day: 25))
    }

    @Test func datesRoundTripAcrossLeapYearsAndBeforeTheEpoch() {
        for (y, m, d) in [(2024, 2, 29), (2000, 2, 29), (1969, 12, 31), (1900, 3, 1), (2099, 12, 31)] {
            let at = VietnamTime.ms(year: y, month: m, day: d, hour: 12)
            let expected = String(format: "%04d-%02d-%02d", y, m, d)
            #expect(VietnamTime.dateString(atMs: at) == expected)
        }
    }
}

@Suite struct VietnamPhoneTests {
    @Test(arguments: [
        ("0912345678", "0912345678"), ("+84 912 345 678", "0912345678"), ("84912345678", "0912345678"),
        ("0912.345.678", "0912345678"), ("(091) 234-5678", "0912345678"), ("０９１２３４５６７８", "0912345678"),
        ("0388123456", "0388123456"),
    ])
    func writtenFormsNormalise(raw: String, stored: String) {
        #expect(VietnamPhone.normalize(raw) == stored)
    }

    @Test(arguments: ["0212345678", "091234567", "09123456789", "+0912345678", "0912a45678", "", "84 2 1234 5678"])
    func nonMobileNumbersAreRefused(raw: String) {
        #expect(VietnamPhone.normalize(raw) == nil)
    }

    @Test func civilDatesAndParsing() {
        for (y, m, d) in [(1970, 1, 1), (2024, 2, 29), (2026, 12, 31), (1969, 12, 31), (2100, 3, 1)] {
            let n = VietnamTime.daysFromCivil(year: y, month: m, day: d)
            #expect(VietnamTime.civil(dayNumber: n) == (y, m, d))
        }
        #expect(VietnamTime.parseDate("2024-02-29")! == (2024, 2, 29))
        for bad in ["2023-02-29", "2026-13-01", "2026-1-01", "+026-01-01", "2026-01-1a", "2026/01/01", "", "2026-04-31"] {
            #expect(VietnamTime.parseDate(bad) == nil, "\(bad)")
        }
        #expect(VietnamTime.daysInMonth(year: 2100, month: 2) == 28 && VietnamTime.daysInMonth(year: 2000, month: 2) == 29)
    }
}
