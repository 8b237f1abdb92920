//! Per-client-IP token buckets of one route: `rate` tokens a second, at most `burst` held;
//! a request takes one or is answered 429 with the time until the next token.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Shards keep workers from contending on one lock.
const SHARDS: usize = 16;
/// A shard holding more clients than this drops the ones whose bucket refilled.
const PRUNE_AT: usize = 4096;

#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    shards: Vec<Mutex<HashMap<IpAddr, Bucket>>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    pub fn new(rate: f64, burst: u32) -> RateLimiter {
        RateLimiter {
            rate,
            burst: f64::from(burst.max(1)),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    /// Take a token for `ip` now; Err: how long until one is available.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        self.check_at(ip, Instant::now())
    }

    fn check_at(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let shard = &self.shards[shard_of(ip)];
        let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= PRUNE_AT && !map.contains_key(&ip) {
            let (rate, burst) = (self.rate, self.burst);
            map.retain(|_, b| refill(b, rate, burst, now) < burst);
        }
        let b = map.entry(ip).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let tokens = refill(b, self.rate, self.burst, now);
        b.tokens = tokens;
        b.at = now;
        if tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - tokens) / self.rate))
        }
    }
}

fn refill(b: &Bucket, rate: f64, burst: f64, now: Instant) -> f64 {
    let dt = now.saturating_duration_since(b.at).as_secs_f64();
    (b.tokens + dt * rate).min(burst)
}

fn shard_of(ip: IpAddr) -> usize {
    let last = match ip {
        IpAddr::V4(v) => v.octets()[3] as usize ^ v.octets()[2] as usize,
        IpAddr::V6(v) => v.octets()[15] as usize ^ v.octets()[14] as usize,
    };
    last % SHARDS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_next_waits_for_a_token() {
        let l = RateLimiter::new(10.0, 10);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..10 {
            assert!(l.check_at(ip, t0).is_ok());
        }
        let wait = l.check_at(ip, t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-6, "{wait:?}");
        // Another client has its own bucket.
        assert!(l.check_at("10.0.0.2".parse().unwrap(), t0).is_ok());
        // A tenth of a second later one token is back, not more.
        let t1 = t0 + Duration::from_millis(100);
        assert!(l.check_at(ip, t1).is_ok());
        assert!(l.check_at(ip, t1).is_err());
    }

    #[test]
    fn idle_clients_are_pruned_and_buckets_never_exceed_burst() {
        let l = RateLimiter::new(1000.0, 2);
        let t0 = Instant::now();
        for i in 0..(PRUNE_AT * SHARDS * 2) as u32 {
            let ip = IpAddr::from((i as u128).to_be_bytes());
            let _ = l.check_at(ip, t0 + Duration::from_secs(u64::from(i)));
        }
        for s in &l.shards {
            assert!(s.lock().unwrap().len() <= PRUNE_AT + 1);
        }
        let ip: IpAddr = "10.0.0.9".parse().unwrap();
        let t = t0 + Duration::from_secs(100_000);
        assert!(l.check_at(ip, t).is_ok());
        assert!(l.check_at(ip, t).is_ok());
        assert!(l.check_at(ip, t).is_err());
    }
}
