//! Pausing a cluster for maintenance (PgBouncer's PAUSE/RESUME), and disabling new logins to
//! it (DISABLE/ENABLE). While paused, a client's
//! next transaction waits before it takes a server connection, and transactions already
//! running finish; the operator learns when none is left (the cluster is drained), does the
//! work (a switchover, a restart of the primary), and resumes. Clients see a delay instead of
//! errors. Shared by every generation of a cluster's state, so a reload neither resumes a
//! paused cluster nor strands the clients waiting on it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// A cluster's pause switch and the count of clients holding one of its server connections;
/// also its disable switch (PgBouncer's DISABLE/ENABLE: new clients refused at login,
/// connected ones served), kept here because it too must outlive a reload.
#[derive(Debug, Default)]
pub struct Pause {
    disabled: AtomicBool,
    paused: AtomicBool,
    held: AtomicUsize,
    /// Woken on resume and whenever the last held connection is let go.
    changed: Notify,
}

/// A client's hold on one of the cluster's server connections (a transaction, a pinned or
/// session-mode client): counted until dropped.
#[derive(Debug)]
pub struct Hold(Arc<Pause>);

impl Drop for Hold {
    fn drop(&mut self) {
        // Only a pause waits for the count to reach zero (set before it starts waiting).
        if self.0.held.fetch_sub(1, Ordering::AcqRel) == 1 && self.0.is_paused() {
            self.0.changed.notify_waiters();
        }
    }
}

impl Pause {
    // The switch and the count are written and read in one total order (SeqCst): a client
    // counts its hold before it looks at the switch, the pause sets the switch before it
    // looks at the count, so either the client sees the pause or the pause sees the client.

    /// New clients of the cluster are refused at login (`POST /disable`).
    pub fn is_disabled(&self) -> bool {
        self.disabled.load(Ordering::Relaxed)
    }

    pub fn set_disabled(&self, disabled: bool) {
        self.disabled.store(disabled, Ordering::Relaxed);
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    pub fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
    }

    pub fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    /// Clients holding a server connection of the cluster now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }

    /// Count a client's hold on a server connection until the returned guard drops, paused
    /// or not (a statement already admitted that moves to another server).
    pub fn hold(self: &Arc<Self>) -> Hold {
        self.held.fetch_add(1, Ordering::SeqCst);
        Hold(self.clone())
    }

    /// A hold for a client about to take a server connection, unless the cluster is paused.
    /// Counted before the switch is read: a pause that begins at the same moment waits for
    /// this client (see `until_drained`) rather than report the cluster drained while the
    /// client goes on to take a connection.
    pub fn try_hold(self: &Arc<Self>) -> Option<Hold> {
        let hold = self.hold();
        (!self.is_paused()).then_some(hold)
    }

    /// [`Self::try_hold`], waiting while paused (at most `limit`; past it, what the client of
    /// `cluster` is told).
    pub async fn admit_hold(
        self: &Arc<Self>,
        cluster: &str,
        limit: Duration,
    ) -> Result<Hold, String> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(hold) = self.try_hold() {
                return Ok(hold);
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if !self.until_resumed(left).await {
                return Err(still_paused(cluster, limit));
            }
        }
    }

    /// Wait while paused, at most `limit`: true once not paused (at once if it is not),
    /// false if still paused at the end.
    pub async fn until_resumed(&self, limit: Duration) -> bool {
        self.wait_for(limit, || !self.is_paused()).await
    }

    /// Wait until no client holds a connection, at most `limit`; the count left.
    pub async fn until_drained(&self, limit: Duration) -> usize {
        self.wait_for(limit, || self.held() == 0).await;
        self.held()
    }

    async fn wait_for(&self, limit: Duration, done: impl Fn() -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if done() {
                return true;
            }
            tokio::select! {
                _ = &mut changed => {}
                _ = tokio::time::sleep_until(deadline) => return done(),
            }
        }
    }
}

/// What a client is told when the cluster stayed paused for all of `limit`.
fn still_paused(cluster: &str, limit: Duration) -> String {
    format!(
        "cluster {cluster} is paused for maintenance and was not resumed within \
         pause_timeout ({limit:?})"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_end_at_resume_and_when_the_last_hold_goes() {
        let p = Arc::new(Pause::default());
        assert!(p.until_resumed(Duration::ZERO).await, "not paused: no wait");
        p.pause();
        assert!(!p.until_resumed(Duration::from_millis(20)).await);
        let waiter = {
            let p = p.clone();
            tokio::spawn(async move { p.until_resumed(Duration::from_secs(10)).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        p.resume();
        assert!(waiter.await.unwrap());

        // A drain is awaited while paused (only then does the last hold wake it).
        p.pause();
        let (a, b) = (p.hold(), p.hold());
        assert_eq!(p.until_drained(Duration::from_millis(20)).await, 2);
        let drained = {
            let p = p.clone();
            tokio::spawn(async move { p.until_drained(Duration::from_secs(10)).await })
        };
        drop(a);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!drained.is_finished());
        drop(b);
        assert_eq!(drained.await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_client_is_held_or_waits_never_both_missed() {
        let p = Arc::new(Pause::default());
        let h = p.try_hold().expect("not paused");
        p.pause();
        // The pause sees the client that took its hold before the switch.
        assert_eq!(p.until_drained(Duration::from_millis(10)).await, 1);
        drop(h);
        assert!(p.try_hold().is_none(), "paused: no hold");
        assert_eq!(p.held(), 0, "a refused hold is not counted");
        let waiter = {
            let p = p.clone();
            tokio::spawn(async move { p.admit_hold("c", Duration::from_secs(10)).await.is_ok() })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        p.resume();
        assert!(waiter.await.unwrap());
        p.pause();
        let e = p
            .admit_hold("c", Duration::from_millis(20))
            .await
            .unwrap_err();
        assert!(e.contains("pause_timeout"), "{e}");
        // Many clients racing a pause: each is either counted or kept out.
        p.resume();
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let p = p.clone();
            tasks.push(tokio::spawn(async move { p.try_hold() }));
        }
        p.pause();
        let mut held = Vec::new();
        for t in tasks {
            held.extend(t.await.unwrap());
        }
        assert_eq!(p.held(), held.len());
    }
}
