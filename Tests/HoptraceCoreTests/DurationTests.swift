import XCTest

@testable import HoptraceCore

final class DurationTests: XCTestCase {
    func testDurations() {
        XCTAssertEqual(DurationParser.nanoseconds("10s"), 10_000_000_000)
        XCTAssertEqual(DurationParser.nanoseconds("500ms"), 500_000_000)
        XCTAssertEqual(DurationParser.nanoseconds("2m"), 120_000_000_000)
        XCTAssertEqual(DurationParser.nanoseconds("1.5s"), 1_500_000_000)
        XCTAssertEqual(DurationParser.nanoseconds("250us"), 250_000)
        XCTAssertNil(DurationParser.nanoseconds("abc"))
        XCTAssertNil(DurationParser.nanoseconds("10"))
        XCTAssertNil(DurationParser.nanoseconds("-1s"))
        XCTAssertNil(DurationParser.nanoseconds("1e30h"))
    }
}
