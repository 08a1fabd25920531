//! The order of the runs sent to one container, for runs queued behind another
//! ([`crate::pool::Placement::Warm`] with `behind`).
//!
//! A proxy serves the runs of a container without concurrency one after another, in the order
//! they arrive. A run sent while another is in progress therefore starts when that one ends:
//! its time limit counts from then, and if the run ahead ends without an answer (a time-out or
//! a crash: the container is destroyed), the queued run never started and may run elsewhere.
//! Every `/run` takes a ticket (how many runs were sent to the container before it) and marks
//! its end; a queued run waits until every run before its ticket has ended.

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use tokio::sync::Notify;

#[derive(Default)]
pub(crate) struct Turns {
    sent: AtomicU64,
    ended: Mutex<Ended>,
    changed: Notify,
}

#[derive(Default)]
struct Ended {
    runs: u64,
    /// Whether the last run to end was answered by the proxy.
    answered: bool,
}

impl Turns {
    /// A run is being sent: its ticket, the number of runs sent before it. Marks the run's
    /// end when dropped, as unanswered unless [`Turn::answered`] was called.
    pub fn begin(&self) -> Turn<'_> {
        Turn {
            turns: self,
            ticket: self.sent.fetch_add(1, Ordering::Relaxed),
            answered: false,
        }
    }

    /// Waits until every run sent before `ticket` has ended; returns whether the last of them
    /// was answered (if not, the container is going away and a run queued behind never
    /// started).
    pub async fn ahead_ended(&self, ticket: u64) -> bool {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Registered before the check: an end in between still wakes us.
            changed.as_mut().enable();
            {
                let e = self.ended.lock();
                if e.runs >= ticket {
                    return e.answered;
                }
            }
            changed.await;
        }
    }
}

/// One run's place in its container's order.
pub(crate) struct Turn<'a> {
    turns: &'a Turns,
    pub ticket: u64,
    answered: bool,
}

impl Turn<'_> {
    /// The proxy answered this run: the run queued behind it (if any) has started.
    pub fn answered(&mut self) {
        self.answered = true;
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        {
            let mut e = self.turns.ended.lock();
            e.runs += 1;
            e.answered = self.answered;
        }
        self.turns.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_queued_run_waits_for_the_run_ahead_and_learns_how_it_ended() {
        let turns = Turns::default();
        let mut first = turns.begin();
        let second = turns.begin();
        assert_eq!((first.ticket, second.ticket), (0, 1));
        // Nothing before the first run.
        assert!(!turns.ahead_ended(0).await);
        let wait = tokio::time::timeout(Duration::from_millis(20), turns.ahead_ended(1));
        assert!(wait.await.is_err(), "the first run is still in progress");
        first.answered();
        drop(first);
        assert!(turns.ahead_ended(1).await, "answered");
        // The second run ends without an answer (its container failed): a third, queued
        // behind it, learns that it never started.
        let third = turns.begin();
        let (ahead, ()) = tokio::join!(turns.ahead_ended(third.ticket), async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            drop(second);
        });
        assert!(!ahead);
    }
}
