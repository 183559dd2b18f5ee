//! The `[workers]` section: how many workers, their leases and polling, status edits, the
//! hand-back at shutdown, and provider time limits.

use std::time::Duration;

use crate::pricing::Operation;

/// How a worker behaves; the `[workers]` section.
#[derive(Debug, Clone, Copy, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerConfig {
    /// Concurrent workers in this process.
    pub count: usize,
    /// How long a claim lasts without renewal, in seconds.
    pub lease_seconds: u64,
    /// How long one provider call may take, per operation, in seconds.
    pub timeouts: Timeouts,
    /// How long an idle worker waits before looking for work again, in milliseconds.
    pub poll_ms: u64,
    /// The least time between two edits of one status message, in milliseconds (chat platforms
    /// rate-limit edits; people do not need more).
    pub status_edit_ms: u64,
    /// After shutdown is asked for, a job still running this many seconds later is handed back:
    /// its lease released (its hold kept) so another instance takes it at once.
    pub hand_back_seconds: u64,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            count: 4,
            lease_seconds: 60,
            timeouts: Timeouts::default(),
            poll_ms: 250,
            status_edit_ms: 2_000,
            hand_back_seconds: 20,
        }
    }
}

/// Provider time limits per operation, in seconds. The `[workers.timeouts]` keys are deprecated
/// aliases of `[operations.<name>].timeout_seconds`, kept for one release.
#[derive(Debug, Clone, Copy, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Timeouts {
    pub image: Option<u64>,
    pub enhance: Option<u64>,
    pub removebg: Option<u64>,
    pub faceswap: Option<u64>,
    pub portrait: Option<u64>,
    pub video: Option<u64>,
    pub music: Option<u64>,
    /// Each operation's limit as configured, by [`Operation::index`]; 0 is the table's.
    #[serde(skip)]
    pub seconds: [u64; 7],
}

impl Timeouts {
    /// The limit for one operation.
    pub fn of(&self, operation: Operation) -> Duration {
        let seconds = self.seconds[operation.index()];
        Duration::from_secs(if seconds == 0 {
            operation.info().timeout_seconds
        } else {
            seconds
        })
    }

    /// Applies the deprecated keys, where set; returns whether any was.
    pub fn apply_deprecated_keys(&mut self) -> bool {
        let keys = [
            self.image,
            self.enhance,
            self.removebg,
            self.faceswap,
            self.portrait,
            self.video,
            self.music,
        ];
        for (at, value) in keys.iter().enumerate() {
            if let Some(seconds) = value {
                self.seconds[at] = (*seconds).max(1);
            }
        }
        keys.iter().any(Option::is_some)
    }
}
