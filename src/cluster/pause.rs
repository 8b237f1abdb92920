//! Pausing a cluster for maintenance (PgBouncer's PAUSE/RESUME): while paused, a client's
//! next transaction waits before it takes a server connection, and transactions already
//! running finish; the operator learns when none is left (the cluster is drained), does the
//! work (a switchover, a restart of the primary), and resumes. Clients see a delay instead of
//! errors. Shared by every generation of a cluster's state, so a reload neither resumes a
//! paused cluster nor strands the clients waiting on it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// A cluster's pause switch and the count of clients holding one of its server connections.
#[derive(Debug, Default)]
pub struct Pause {
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
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    pub fn pause(&self) {
        self.paused.store(true, Ordering::Release);
    }

    pub fn resume(&self) {
        self.paused.store(false, Ordering::Release);
        self.changed.notify_waiters();
    }

    /// Clients holding a server connection of the cluster now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }

    /// Count a client's hold on a server connection until the returned guard drops.
    pub fn hold(self: &Arc<Self>) -> Hold {
        self.held.fetch_add(1, Ordering::AcqRel);
        Hold(self.clone())
    }

    /// Wait while paused, at most `limit`: true once not paused (at once if it is not),
    /// false if still paused at the end.
    pub async fn until_resumed(&self, limit: Duration) -> bool {
        self.wait_for(limit, || !self.is_paused()).await
    }

    /// A client's wait before it takes a connection of `cluster`: at once when not paused,
    /// else until resumed, at most `limit`; past it, what the client is told.
    pub async fn admit(&self, cluster: &str, limit: Duration) -> Result<(), String> {
        if !self.is_paused() || self.until_resumed(limit).await {
            Ok(())
        } else {
            Err(still_paused(cluster, limit))
        }
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
}
