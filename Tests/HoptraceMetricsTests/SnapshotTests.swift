import HoptraceCore
import HoptraceMetrics
import XCTest

final class SnapshotTests: XCTestCase {
    func testEmptySnapshotIsEqualToItself() {
        XCTAssertEqual(MetricsSnapshot(), MetricsSnapshot())
    }
}
