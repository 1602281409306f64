import Foundation
import XCTest

/// The one rule for a test that cannot run here (no root, no BPF, a tool missing):
/// it says so loudly and skips, and under CI (CI=true) it fails instead, so a CI
/// that cannot run it is red. Every test target calls this; none decides alone.
public func notRun(_ why: String, file: StaticString = #filePath, line: UInt = #line) throws -> Never {
    let message = "TEST NOT RUN: \(why)"
    FileHandle.standardError.write(Data("\n*** \(message) ***\n\n".utf8))
    if ProcessInfo.processInfo.environment["CI"] == "true" {
        XCTFail(message, file: file, line: line)
        throw XCTSkip("failed above")
    }
    throw XCTSkip(message)
}
