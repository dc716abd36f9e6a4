#if canImport(Glibc)
import Glibc
#endif

/// The mesh's one wall clock: milliseconds since the epoch, as every `…_at_ms`
/// field, token expiry and change log holds them. Named apart from the standard
/// library's `Clock` protocol, which measures durations, not dates.
public enum WallClock {
    /// Now, to the millisecond.
    public static func nowMs() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }

    /// The same time read from the kernel's tick (a few milliseconds coarse, no
    /// system call): for checks made on every request, such as a cached token's expiry.
    public static func coarseNowMs() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME_COARSE, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }
}
