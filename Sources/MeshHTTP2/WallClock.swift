#if canImport(Glibc)
import Glibc
#endif

enum WallClock {
    /// Milliseconds since the epoch (token expiry is wall-clock time).
    static func nowMs() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME_COARSE, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }
}
