import Foundation

/// HTTP's preferred date format, IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`, RFC 9110 §5.6.7),
/// read by position rather than with a `DateFormatter`: a header from outside gets a fixed-cost,
/// locale-free parse that accepts exactly this grammar and nothing else.
enum HTTPDate {
    private static let days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    /// The date, or nil unless `text` is an IMF-fixdate naming a real calendar day.
    static func parse(_ text: String) -> Date? {
        let b = Array(text.utf8)
        guard b.count == 29, b[3] == UInt8(ascii: ","), b[4] == UInt8(ascii: " "), b[7] == UInt8(ascii: " "),
            b[11] == UInt8(ascii: " "), b[16] == UInt8(ascii: " "), b[19] == UInt8(ascii: ":"), b[22] == UInt8(ascii: ":"),
            Array(b[25...]) == Array(" GMT".utf8),
            days.contains(where: { Array($0.utf8) == Array(b[0..<3]) }),
            let monthIndex = months.firstIndex(where: { Array($0.utf8) == Array(b[8..<11]) }),
            let day = digits(b[5..<7]), let year = digits(b[12..<16]), let hour = digits(b[17..<19]),
            let minute = digits(b[20..<22]), let second = digits(b[23..<25])
        else { return nil }
        let month = monthIndex + 1
        // Second 60 is a leap second, which the grammar allows.
        guard (1...daysIn(month: month, year: year)).contains(day), hour <= 23, minute <= 59, second <= 60 else { return nil }
        let seconds = daysFromCivil(year: year, month: month, day: day) * 86_400 + hour * 3_600 + minute * 60 + second
        return Date(timeIntervalSince1970: Double(seconds))
    }

    /// A run of ASCII digits as a number (at most 4 here, so no overflow).
    private static func digits(_ bytes: ArraySlice<UInt8>) -> Int? {
        var value = 0
        for byte in bytes {
            guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) else { return nil }
            value = value * 10 + Int(byte - UInt8(ascii: "0"))
        }
        return value
    }

    private static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    /// Days since 1970-01-01 in the proleptic Gregorian calendar (H. Hinnant's `days_from_civil`).
    private static func daysFromCivil(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }
}
