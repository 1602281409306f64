import ArgumentParser
public struct HoptraceCommand: ParsableCommand { public init() {} }
