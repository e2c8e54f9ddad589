//! How the writer reports its results: to `/healthz` (did the last commit work?) and to the log
//! (every failure counted, but only so many lines).

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often, at most, a summary of repeated write failures is logged. A full disk fails every
/// write; logging each one filled 28 MB of logs in 13 s.
pub(crate) const SUMMARY_INTERVAL: Duration = Duration::from_secs(10);

/// The writer's last result, shared with whoever asks whether the store can write: failing from
/// a failed commit until the next commit that succeeds.
#[derive(Debug, Default)]
pub(crate) struct WriteHealth {
    failure: Mutex<Option<String>>,
}

impl WriteHealth {
    pub(crate) fn succeeded(&self) {
        *self.lock() = None;
    }

    pub(crate) fn failed(&self, diagnosis: String) {
        *self.lock() = Some(diagnosis);
    }

    /// Why the last commit failed, while no commit has succeeded since.
    pub(crate) fn failure(&self) -> Option<String> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        // The value is replaced whole, so a panic elsewhere cannot leave it half-written.
        self.failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// What to log after a write's result.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LogLine {
    /// The first failure after writes worked.
    First { diagnosis: String },
    /// Failures not logged since the last line, once `SUMMARY_INTERVAL` has passed.
    Summary {
        count: u64,
        over: Duration,
        last: String,
    },
    /// Writes work again; `unreported` failures happened since the last line.
    Recovered { unreported: u64 },
}

/// Decides which write results are worth a log line: the first failure at once, then at most one
/// summary per `SUMMARY_INTERVAL`, then one line when writes work again.
#[derive(Debug, Default)]
pub(crate) struct FailureLog {
    failing: Option<Failing>,
}

#[derive(Debug)]
struct Failing {
    since_last_line: Instant,
    unreported: u64,
    last: String,
}

impl FailureLog {
    pub(crate) fn failed(&mut self, now: Instant, diagnosis: String) -> Option<LogLine> {
        let Some(failing) = &mut self.failing else {
            self.failing = Some(Failing {
                since_last_line: now,
                unreported: 0,
                last: diagnosis.clone(),
            });
            return Some(LogLine::First { diagnosis });
        };
        failing.unreported += 1;
        failing.last = diagnosis;
        let over = now.saturating_duration_since(failing.since_last_line);
        if over < SUMMARY_INTERVAL {
            return None;
        }
        let line = LogLine::Summary {
            count: failing.unreported,
            over,
            last: failing.last.clone(),
        };
        failing.since_last_line = now;
        failing.unreported = 0;
        Some(line)
    }

    pub(crate) fn succeeded(&mut self) -> Option<LogLine> {
        let failing = self.failing.take()?;
        Some(LogLine::Recovered {
            unreported: failing.unreported,
        })
    }
}

impl LogLine {
    pub(crate) fn emit(&self) {
        match self {
            LogLine::First { diagnosis } => tracing::error!(
                "writing to the database failed: {diagnosis}. Until writes work again, further \
                 failures are counted and summarised every {} s",
                SUMMARY_INTERVAL.as_secs()
            ),
            LogLine::Summary { count, over, last } => tracing::error!(
                "{count} more write failures in the last {} s: {last}",
                over.as_secs()
            ),
            LogLine::Recovered { unreported } => tracing::warn!(
                "writing to the database works again ({unreported} more failures since the last report)"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_failures_give_one_line_then_one_summary_per_interval() {
        let start = Instant::now();
        let mut log = FailureLog::default();
        assert_eq!(
            log.failed(start, "disk full".to_owned()),
            Some(LogLine::First {
                diagnosis: "disk full".to_owned()
            })
        );
        for ms in (10..9_990).step_by(10) {
            assert_eq!(
                log.failed(start + Duration::from_millis(ms), "disk full".to_owned()),
                None,
                "no line {ms} ms after the first failure"
            );
        }
        let at = start + SUMMARY_INTERVAL;
        assert_eq!(
            log.failed(at, "still full".to_owned()),
            Some(LogLine::Summary {
                count: 999,
                over: SUMMARY_INTERVAL,
                last: "still full".to_owned()
            })
        );
        assert_eq!(
            log.failed(at + Duration::from_secs(1), "x".to_owned()),
            None
        );
        assert_eq!(log.succeeded(), Some(LogLine::Recovered { unreported: 1 }));
        assert_eq!(log.succeeded(), None, "success after success says nothing");
        assert!(
            matches!(
                log.failed(at + Duration::from_secs(2), "again".to_owned()),
                Some(LogLine::First { .. })
            ),
            "a failure after recovery is reported at once"
        );
    }

    #[test]
    fn health_fails_until_a_write_succeeds() {
        let health = WriteHealth::default();
        assert_eq!(health.failure(), None);
        health.failed("disk full".to_owned());
        assert_eq!(health.failure().as_deref(), Some("disk full"));
        health.succeeded();
        assert_eq!(health.failure(), None);
    }
}
