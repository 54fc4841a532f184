//! The backoff for re-listing after a failed watch: short and bounded, reset by any success.
//! kube-runtime's default grows to 30 s during an outage and keeps that after it, which left the
//! RBAC cache and the reconciler a minute stale after an API-server restart.

use std::time::Duration;

use backon::BackoffBuilder;

/// The longest wait before a failed watch is listed again.
pub const RELIST_MAX: Duration = Duration::from_secs(2);

/// 200 ms doubling to [`RELIST_MAX`], jittered, never giving up.
pub struct RelistBackoff(backon::ExponentialBackoff);

impl Default for RelistBackoff {
    fn default() -> Self {
        Self(
            backon::ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(200))
                .with_max_delay(RELIST_MAX)
                .with_jitter()
                .without_max_times()
                .build(),
        )
    }
}

impl Iterator for RelistBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(self.0.next().unwrap_or(RELIST_MAX).min(RELIST_MAX * 2))
    }
}

impl kube::runtime::utils::Backoff for RelistBackoff {
    fn reset(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::utils::Backoff;

    #[test]
    fn bounded_and_reset() {
        let mut b = RelistBackoff::default();
        let waits: Vec<Duration> = (&mut b).take(20).collect();
        // Jitter may add up to the delay itself.
        assert!(waits.iter().all(|w| *w <= RELIST_MAX * 2), "{waits:?}");
        b.reset();
        assert!(b.next().unwrap_or_default() <= Duration::from_millis(400));
    }
}
