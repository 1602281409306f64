extension Array where Element == UInt8 {
    /// Appends `value` as an unsigned LEB128 varint (7 bits a byte, low first): the
    /// integers of recordings and of Prometheus's protobuf exposition alike.
    @inlinable @inline(__always)
    public mutating func appendVarint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        append(UInt8(truncatingIfNeeded: v))
    }
}
