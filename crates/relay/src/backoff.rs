//! How long to wait before retrying: exponential, capped, with jitter so that many messages
//! failing together do not all come back at the same instant.

use std::time::Duration;

/// No retry waits longer than this.
pub const MAX: Duration = Duration::from_secs(300);

/// The delay before attempt `attempts + 1`: `base * 2^(attempts-1)` capped at `MAX`, then
/// somewhere between half of it and all of it ("equal jitter").
pub fn delay(attempts: i64, base: Duration) -> Duration {
    let exponent = u32::try_from(attempts.saturating_sub(1).clamp(0, 20)).unwrap_or(20);
    let full = base.saturating_mul(1 << exponent).min(MAX);
    let random = getrandom::u64().unwrap_or(u64::MAX / 2);
    let fraction = 0.5 + (random as f64 / u64::MAX as f64) / 2.0;
    full.mul_f64(fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_within_its_jitter_band_and_is_capped() {
        let base = Duration::from_millis(500);
        for attempts in 1..=30 {
            let full = base.saturating_mul(1 << (attempts - 1).min(20)).min(MAX);
            let d = delay(attempts, base);
            assert!(
                d >= full / 2 && d <= full,
                "attempt {attempts}: {d:?} vs {full:?}"
            );
        }
        assert!(delay(100, base) <= MAX);
    }
}
