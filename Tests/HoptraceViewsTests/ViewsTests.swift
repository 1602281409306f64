import HoptraceCore
import HoptraceViews
import XCTest

final class ViewsTests: XCTestCase {
    func testSegmentOrderCoversEverySegment() {
        XCTAssertEqual(Set(Views.segmentOrder.map(\.rawValue)), Set(Segment.allCases.map(\.rawValue)))
    }
}
