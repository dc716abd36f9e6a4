/// Vietnam has one time zone, UTC+7, with no daylight saving: day and range
/// boundaries of reports are its midnights (R-REP-1).
public enum VietnamTime {
    public static let offsetMs: Int64 = 7 * 3_600_000
    public static let dayMs: Int64 = 86_400_000

    /// [start, end) of the Vietnam calendar day `year-month-day`, in UTC milliseconds.
    public static func day(year: Int, month: Int, day: Int) -> Range<Int64> {
        let start = daysFromCivil(year: year, month: month, day: day) * dayMs - offsetMs
        return start..<(start + dayMs)
    }

    /// UTC milliseconds of a Vietnam wall-clock time.
    public static func ms(year: Int, month: Int, day: Int, hour: Int = 0, minute: Int = 0, second: Int = 0) -> Int64 {
        Self.day(year: year, month: month, day: day).lowerBound + Int64(hour * 3600 + minute * 60 + second) * 1000
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
    public static func daysFromCivil(year: Int, month: Int, day: Int) -> Int64 {
        let y = Int64(month <= 2 ? year - 1 : year)
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let m = Int64(month)
        let doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + Int64(day) - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    /// The Vietnam calendar day of a UTC time, as days since 1970-01-01: what
    /// per-day quotas and daily reports are keyed by.
    public static func dayNumber(atMs ms: Int64) -> Int64 {
        let local = ms + offsetMs
        return local >= 0 ? local / dayMs : (local - dayMs + 1) / dayMs
    }

    /// The calendar date of a day number (days since 1970-01-01), the inverse of `daysFromCivil`.
    public static func civil(dayNumber: Int64) -> (year: Int, month: Int, day: Int) {
        let z = dayNumber + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yoe + era * 400 + (month <= 2 ? 1 : 0)
        return (Int(year), Int(month), Int(day))
    }

    /// Gregorian leap years.
    public static func isLeapYear(_ year: Int) -> Bool {
        year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
    }

    /// Days in `month` (1…12) of `year`.
    public static func daysInMonth(year: Int, month: Int) -> Int {
        switch month {
        case 2: isLeapYear(year) ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    /// A "YYYY-MM-DD" that names a real date, as its parts.
    public static func parseDate(_ text: String) -> (year: Int, month: Int, day: Int)? {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard text.utf8.count == 10, parts.allSatisfy({ $0.utf8.allSatisfy { (0x30...0x39).contains($0) } }), parts.count == 3, parts[0].count == 4, parts[1].count == 2, parts[2].count == 2,
              let year = Int(parts[0]), let month = Int(parts[1]), let day = Int(parts[2]),
              (1...12).contains(month), (1...daysInMonth(year: year, month: month)).contains(day) else {
            return nil
        }
        return (year, month, day)
    }

    /// The Vietnam calendar date of a UTC time, as "YYYY-MM-DD".
    public static func dateString(atMs ms: Int64) -> String {
        let (year, month, day) = civil(dayNumber: dayNumber(atMs: ms))
        return "\(pad(year, 4))-\(pad(month, 2))-\(pad(day, 2))"
    }

    /// The Vietnam calendar date of a UTC time as Vietnamese write it, "DD/MM/YYYY".
    public static func displayDate(atMs ms: Int64) -> String {
        let (year, month, day) = civil(dayNumber: dayNumber(atMs: ms))
        return "\(pad(day, 2))/\(pad(month, 2))/\(pad(year, 4))"
    }

    static func pad(_ n: Int, _ width: Int) -> String {
        let digits = String(n)
        return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }
}
