//! The HTTP edge's in-memory response cache (GET/HEAD), shared by every worker thread.
//!
//! A deliberately small subset of RFC 9111 for a *shared* cache, chosen so that anything it
//! does is safe to do without revalidation:
//!
//! * **Requests** (`Cache::lookup`): only GET and HEAD are looked up. `Authorization`,
//!   `Cache-Control: no-store`, `If-Match` and `If-Unmodified-Since` make the request a
//!   [`Lookup::Bypass`]. `Cache-Control: no-cache` or `max-age=0` on the request never serve a
//!   stored response: the caller gets a [`Lookup::Miss`] whose store replaces the entry (a
//!   refresh). Other request `max-age=N` / `min-fresh=N` are honoured; `max-stale` is ignored
//!   (stale responses are never served) and so is `Pragma` (deprecated by RFC 9111).
//! * **Responses** (`Fill::cacheable` / `Fill::store`): stored only with status 200, 203, 204,
//!   300, 301, 308, 404 or 410 *and* explicit freshness (`s-maxage`, else `max-age`, else
//!   `Expires - Date`). `no-store`, `private`, `no-cache` (with or without field names),
//!   `Vary: *`, `Set-Cookie`, or a lifetime that is already used up by upstream `Age` are not
//!   stored. Since this cache never revalidates, `no-cache` responses are simply not stored.
//! * **HEAD**: a HEAD is served from a stored GET response (same headers, empty body). A HEAD
//!   miss is returned as [`Lookup::Bypass`]: it goes upstream, never waits for an in-flight GET,
//!   never takes the coalescing slot and is never stored (a body-less HEAD answer must not
//!   become the GET body). It is still counted as a miss in [`CacheStats`].
//! * **Age**: the `Age` sent on a hit is the upstream `Age` (its first valid member; an invalid
//!   value is ignored as RFC 9111 §5.1 says) plus whole seconds since the response was stored.
//!   A response is fresh while `age < lifetime`; a stale entry found by a lookup is removed and
//!   the lookup is a miss.
//! * **Vary**: each stored variant remembers the request values (all lines, trimmed) of the
//!   headers its response's `Vary` names; a lookup only matches a variant whose recorded values
//!   equal its own. Up to [`MAX_VARIANTS`] variants of one key coexist.
//! * **Coalescing**: the first miss for a key takes the key's slot (its [`Fill`] is the
//!   *leader*); later misses for the same key wait (bounded by `wait`, in total) until the leader
//!   stores or drops its `Fill`, then run the lookup again. Coalescing is per key, not per
//!   variant: a waiter whose Vary values differ from the leader's wakes up, misses on the
//!   re-run, and becomes a leader itself. When a `Fill` is dropped without storing, all waiters
//!   wake at once but only the first to re-run the lookup takes the slot; the others wait for
//!   that one. So an uncacheable response makes the waiters go upstream one after another —
//!   accepted: the alternative (everyone at once) is the stampede coalescing exists to prevent,
//!   and they are bounded by `wait` anyway.
//! * **Timeout**: a waiter whose `wait` runs out gets a [`Lookup::Miss`] of its own that is *not*
//!   coalesced ([`Fill::is_leader`] is false): nobody waits on it and dropping it releases
//!   nobody, but storing it still stores (a complete fresh response is useful whoever fetched
//!   it). Requests that would typically get a non-storable answer (`Range`, `If-None-Match`,
//!   `If-Modified-Since`, `If-Range`) and refreshes while a leader is in flight get such
//!   uncoalesced misses too: they would only make the waiters behind them wait for nothing.
//!   Waiting uses `tokio::time`, so the calling runtime must have its time driver enabled;
//!   `wait == 0` never touches the timer.
//! * **Size**: bounded by `max_bytes`, counting body + approximate header bytes + key + Vary
//!   values + a fixed per-entry overhead; least-recently-used variants are evicted first
//!   (a `BTreeMap<tick, key>` index: O(log n) per hit, store and eviction). Bodies over
//!   `max_object_bytes` are never stored.
//! * **Stored headers**: hop-by-hop fields (`Connection` and every field it names,
//!   `Keep-Alive`, `Transfer-Encoding`, `TE`, `Trailer`, `Upgrade`, `Proxy-Connection`,
//!   `Proxy-Authenticate`) and upstream `Age` and `X-Cache` are dropped; `Content-Length` is set
//!   to the stored body's length (not for 204), since the body is complete and its upstream
//!   framing is gone.
//!
//! Locking: one `std::sync::Mutex` around the index; it is never held across an `.await`, and
//! waiting uses `tokio::sync::watch` (runtime-agnostic), so any number of current-thread
//! runtimes may share one `Arc<Cache>`. Nothing here spawns tasks or panics on header input.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode};
use tokio::sync::watch;

mod rules;
use rules::*;

/// Largest delta-seconds value used (RFC 9111 §1.2.2: larger values and overflows become 2^31).
const MAX_DELTA: u64 = 1 << 31;
/// Most variants kept for one key; storing one more evicts that key's least recently used.
/// Bounds the per-lookup scan over variants (e.g. against `Vary: User-Agent`).
pub const MAX_VARIANTS: usize = 32;
/// `wait` is clamped to this, so a huge timeout cannot overflow an `Instant`.
const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);
/// Approximate fixed cost of one entry (maps, Arc, Stored struct) in the byte budget.
const ENTRY_OVERHEAD: usize = 160;
/// Approximate per-header-field cost beyond name and value bytes.
const FIELD_OVERHEAD: usize = 32;
const X_CACHE: HeaderName = HeaderName::from_static("x-cache");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Wall-clock source; injectable so tests (and callers with a coarse clock) control time.
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// Counters and gauges for metrics. `hits + misses + bypasses` is the number of lookups.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered with [`Lookup::Hit`].
    pub hits: u64,
    /// Lookups that found no usable stored response (including HEAD misses, which return
    /// [`Lookup::Bypass`], and timed-out waiters).
    pub misses: u64,
    /// Bytes currently accounted to stored entries (always `<= max_bytes`).
    pub bytes: u64,
    /// Stored variants currently held.
    pub entries: u64,
    /// Variants evicted to make room (LRU or the per-key variant cap); replacements and stale
    /// removals are not counted.
    pub evictions: u64,
    /// Lookups that waited for another caller's in-flight fill (counted once per lookup).
    pub coalesced: u64,
    /// Lookups answered with [`Lookup::Bypass`] because the request is not cacheable.
    pub bypasses: u64,
}

/// One request header named by the stored response's `Vary`, with the request's values.
struct VaryField {
    name: HeaderName,
    values: Vec<Vec<u8>>,
}

/// A stored response. Shared (`Arc`) so a hit never copies the body.
pub struct Stored {
    pub status: StatusCode,
    /// Stored headers: hop-by-hop, `Age` and `X-Cache` removed, `Content-Length` set.
    pub headers: HeaderMap,
    pub body: Bytes,
    /// When it was stored (by the cache's clock).
    pub stored_at: SystemTime,
    /// The upstream `Age`, in seconds, at that moment.
    pub initial_age: u64,
    /// Freshness lifetime in seconds (from `s-maxage`, `max-age` or `Expires`).
    pub lifetime: u64,
    vary: Vec<VaryField>,
    size: usize,
    clock: Clock,
}

impl fmt::Debug for Stored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stored")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body_len", &self.body.len())
            .field("initial_age", &self.initial_age)
            .field("lifetime", &self.lifetime)
            .finish()
    }
}

impl Stored {
    /// Current age in seconds: upstream `Age` plus whole seconds since it was stored.
    pub fn age(&self) -> u64 {
        self.age_at((self.clock)())
    }

    fn age_at(&self, now: SystemTime) -> u64 {
        // A clock that went backwards counts as no time elapsed.
        let resident = now
            .duration_since(self.stored_at)
            .map_or(0, |d| d.as_secs());
        self.initial_age.saturating_add(resident)
    }

    fn fresh_at(&self, now: SystemTime) -> bool {
        self.age_at(now) < self.lifetime
    }

    /// Whether this variant is the one selected by a request with these headers (Vary).
    fn matches(&self, req: &HeaderMap) -> bool {
        self.vary.iter().all(|field| {
            let mut got = req.get_all(&field.name).iter();
            for want in &field.values {
                match got.next() {
                    Some(v) if v.as_bytes().trim_ascii() == want.as_slice() => {}
                    _ => return false,
                }
            }
            got.next().is_none()
        })
    }

    /// The response to send for a hit: status, stored headers plus `Age: <secs>` and
    /// `X-Cache: HIT` (for HEAD, same headers — including `Content-Length` — and an empty body).
    pub fn to_response(&self, head_only: bool) -> Response<Bytes> {
        let body = if head_only {
            Bytes::new()
        } else {
            self.body.clone()
        };
        self.build(self.status, self.headers.clone(), body)
    }

    fn build(&self, status: StatusCode, mut headers: HeaderMap, body: Bytes) -> Response<Bytes> {
        headers.insert(header::AGE, HeaderValue::from(self.age()));
        headers.insert(X_CACHE, HeaderValue::from_static("HIT"));
        let mut resp = Response::new(body);
        *resp.status_mut() = status;
        *resp.headers_mut() = headers;
        resp
    }

    /// Whether a conditional GET/HEAD with these headers should get a 304 from this stored 200:
    /// `If-None-Match` (weak comparison, `*`) against the stored `ETag`, or — only when there is
    /// no `If-None-Match` — `If-Modified-Since` against the stored `Last-Modified`.
    pub fn not_modified(&self, req_headers: &HeaderMap) -> bool {
        if self.status != StatusCode::OK {
            return false;
        }
        let mut inm = req_headers.get_all(header::IF_NONE_MATCH).iter().peekable();
        if inm.peek().is_some() {
            let Some(etag) = self.headers.get(header::ETAG) else {
                return false;
            };
            let etag = opaque_tag(etag.as_bytes().trim_ascii());
            return inm.any(|v| {
                split_list(v.as_bytes())
                    .into_iter()
                    .any(|t| t == b"*" || opaque_tag(t) == etag)
            });
        }
        let since = req_headers
            .get(header::IF_MODIFIED_SINCE)
            .and_then(http_date);
        let modified = self.headers.get(header::LAST_MODIFIED).and_then(http_date);
        matches!((since, modified), (Some(s), Some(m)) if m <= s)
    }

    /// A `304 Not Modified` for this stored response, with the fields RFC 9110 §15.4.5 asks
    /// for (plus `Last-Modified`, `Age` and `X-Cache: HIT`).
    pub fn to_not_modified_response(&self) -> Response<Bytes> {
        let mut headers = HeaderMap::new();
        for name in [
            header::CACHE_CONTROL,
            header::CONTENT_LOCATION,
            header::DATE,
            header::ETAG,
            header::EXPIRES,
            header::VARY,
            header::LAST_MODIFIED,
        ] {
            for v in self.headers.get_all(&name) {
                headers.append(name.clone(), v.clone());
            }
        }
        self.build(StatusCode::NOT_MODIFIED, headers, Bytes::new())
    }

    /// Convenience for a hit: 304 when the request's conditionals say so, else the full
    /// response (empty body for HEAD).
    pub fn respond(&self, method: &Method, req_headers: &HeaderMap) -> Response<Bytes> {
        if self.not_modified(req_headers) {
            self.to_not_modified_response()
        } else {
            self.to_response(*method == Method::HEAD)
        }
    }
}

/// What [`Cache::lookup`] decided.
pub enum Lookup {
    /// A fresh stored response that matches the request (incl. Vary).
    Hit(Arc<Stored>),
    /// Not cacheable request (method not GET/HEAD, request `Cache-Control: no-store`,
    /// `Authorization`, `If-Match`, `If-Unmodified-Since`), or a HEAD miss: go upstream, do not
    /// store.
    Bypass,
    /// A miss: this caller goes upstream; it must call `fill.store(..)` or just drop `fill`
    /// (drop = nothing stored; waiters are released and retry the lookup).
    Miss(Fill),
}

impl fmt::Debug for Lookup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lookup::Hit(s) => f.debug_tuple("Hit").field(s).finish(),
            Lookup::Bypass => f.write_str("Bypass"),
            Lookup::Miss(fill) => f.debug_tuple("Miss").field(fill).finish(),
        }
    }
}

/// One variant in the index; `tick` is its position in the LRU order.
struct Variant {
    stored: Arc<Stored>,
    tick: u64,
}

/// An outstanding leader fill for a key; waiters clone `rx` and wait for the sender to drop.
struct Flight {
    id: u64,
    rx: watch::Receiver<()>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<Arc<str>, Vec<Variant>>,
    /// LRU order: smallest tick = least recently used.
    lru: BTreeMap<u64, Arc<str>>,
    inflight: HashMap<String, Flight>,
    next_tick: u64,
    next_flight: u64,
    bytes: usize,
    hits: u64,
    misses: u64,
    evictions: u64,
    coalesced: u64,
}

impl Inner {
    fn tick(&mut self) -> u64 {
        self.next_tick += 1;
        self.next_tick
    }

    /// The freshest stored variant this request selects, moved to most-recently-used.
    /// Stale variants it selects are removed on the way.
    fn find(&mut self, key: &str, req: &HeaderMap, now: SystemTime) -> Option<Arc<Stored>> {
        loop {
            let stale = self
                .entries
                .get(key)?
                .iter()
                .position(|v| v.stored.matches(req) && !v.stored.fresh_at(now));
            match stale {
                Some(i) => drop(self.remove_at(key, i)),
                None => break,
            }
        }
        let tick = self.tick();
        let best = self
            .entries
            .get_mut(key)?
            .iter_mut()
            .filter(|v| v.stored.matches(req))
            .max_by_key(|v| v.stored.stored_at)?;
        if let Some(k) = self.lru.remove(&best.tick) {
            self.lru.insert(tick, k);
        }
        best.tick = tick;
        Some(best.stored.clone())
    }

    fn remove_at(&mut self, key: &str, index: usize) -> Option<Arc<Stored>> {
        let variants = self.entries.get_mut(key)?;
        if index >= variants.len() {
            return None;
        }
        let v = variants.swap_remove(index);
        if variants.is_empty() {
            self.entries.remove(key);
        }
        self.lru.remove(&v.tick);
        self.bytes = self.bytes.saturating_sub(v.stored.size);
        Some(v.stored)
    }

    fn remove_tick(&mut self, key: &str, tick: u64) {
        let index = self
            .entries
            .get(key)
            .and_then(|vs| vs.iter().position(|v| v.tick == tick));
        if let Some(i) = index {
            self.remove_at(key, i);
        }
    }

    fn insert(&mut self, key: &str, stored: Stored, req: &HeaderMap, max_bytes: usize) {
        // The new response replaces whatever this request would have been served.
        while let Some(i) = self
            .entries
            .get(key)
            .and_then(|vs| vs.iter().position(|v| v.stored.matches(req)))
        {
            self.remove_at(key, i);
        }
        while let Some(oldest) = self
            .entries
            .get(key)
            .filter(|vs| vs.len() >= MAX_VARIANTS)
            .and_then(|vs| vs.iter().map(|v| v.tick).min())
        {
            self.remove_tick(key, oldest);
            self.evictions += 1;
        }
        let key: Arc<str> = match self.entries.get_key_value(key) {
            Some((k, _)) => k.clone(),
            None => Arc::from(key),
        };
        let tick = self.tick();
        self.bytes = self.bytes.saturating_add(stored.size);
        self.lru.insert(tick, key.clone());
        let stored = Arc::new(stored);
        self.entries
            .entry(key)
            .or_default()
            .push(Variant { stored, tick });
        // The new entry has the newest tick and fits on its own, so it is evicted last.
        while self.bytes > max_bytes {
            let Some((tick, victim)) = self.lru.pop_first() else {
                break;
            };
            self.remove_tick(&victim, tick);
            self.evictions += 1;
        }
    }

    fn claim(&mut self, key: &str) -> Slot {
        self.next_flight += 1;
        let id = self.next_flight;
        let (tx, rx) = watch::channel(());
        self.inflight.insert(key.to_owned(), Flight { id, rx });
        Slot { id, _tx: tx }
    }

    fn release(&mut self, key: &str, id: u64) {
        if self.inflight.get(key).is_some_and(|f| f.id == id) {
            self.inflight.remove(key);
        }
    }
}

struct Shared {
    inner: Mutex<Inner>,
    max_bytes: usize,
    max_object_bytes: usize,
    clock: Clock,
    bypasses: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing panics while holding the lock; if something did, the index is still
        // consistent enough to keep serving, so poisoning is ignored.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now(&self) -> SystemTime {
        (self.clock)()
    }
}

/// The shared response cache. Cheap to share as `Arc<Cache>`; all methods take `&self`.
pub struct Cache {
    shared: Arc<Shared>,
}

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("max_bytes", &self.shared.max_bytes)
            .field("max_object_bytes", &self.shared.max_object_bytes)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Cache {
    /// A cache holding at most `max_bytes` (approximate, see module doc), storing no body
    /// larger than `max_object_bytes`.
    pub fn new(max_bytes: usize, max_object_bytes: usize) -> Cache {
        Cache::with_clock(max_bytes, max_object_bytes, Arc::new(SystemTime::now))
    }

    /// Like [`Cache::new`] with an injected wall clock (used for ages, `Expires` and `Date`).
    pub fn with_clock(max_bytes: usize, max_object_bytes: usize, clock: Clock) -> Cache {
        Cache {
            shared: Arc::new(Shared {
                inner: Mutex::new(Inner::default()),
                max_bytes,
                max_object_bytes,
                clock,
                bypasses: AtomicU64::new(0),
            }),
        }
    }

    /// Look `key` (host + path-and-query, built by the caller) up for this request.
    ///
    /// Async because a miss while another caller's fill for `key` is in flight waits for it
    /// (up to `wait` in total), then looks up again. After `wait` the caller gets an
    /// uncoalesced [`Lookup::Miss`] (see module doc); a HEAD never waits.
    pub async fn lookup(
        &self,
        method: &Method,
        key: &str,
        req_headers: &HeaderMap,
        wait: Duration,
    ) -> Lookup {
        let head = *method == Method::HEAD;
        let get_or_head = head || *method == Method::GET;
        let rcc = if get_or_head {
            Directives::parse(req_headers)
        } else {
            Directives::default()
        };
        if !get_or_head
            || rcc.no_store
            || req_headers.contains_key(header::AUTHORIZATION)
            || req_headers.contains_key(header::IF_MATCH)
            || req_headers.contains_key(header::IF_UNMODIFIED_SINCE)
        {
            self.shared.bypasses.fetch_add(1, Ordering::Relaxed);
            return Lookup::Bypass;
        }
        let refresh = rcc.no_cache || rcc.max_age == Some(0);
        let may_lead = ![
            header::RANGE,
            header::IF_RANGE,
            header::IF_NONE_MATCH,
            header::IF_MODIFIED_SINCE,
        ]
        .iter()
        .any(|h| req_headers.contains_key(h));
        let mut waited = false;
        let mut deadline = None;
        loop {
            let mut rx = {
                let mut guard = self.shared.lock();
                let inner = &mut *guard;
                if !refresh {
                    let now = self.shared.now();
                    if let Some(stored) = inner.find(key, req_headers, now) {
                        let age = stored.age_at(now);
                        if rcc.accepts(age, stored.lifetime) {
                            inner.hits += 1;
                            return Lookup::Hit(stored);
                        }
                    }
                }
                if head {
                    inner.misses += 1;
                    return Lookup::Bypass;
                }
                match inner.inflight.get(key) {
                    Some(flight) if !refresh && !wait.is_zero() => {
                        if !waited {
                            waited = true;
                            inner.coalesced += 1;
                        }
                        flight.rx.clone()
                    }
                    busy => {
                        let slot = if busy.is_none() && may_lead {
                            Some(inner.claim(key))
                        } else {
                            None
                        };
                        inner.misses += 1;
                        drop(guard);
                        return Lookup::Miss(self.fill(key, req_headers, slot));
                    }
                }
            };
            let deadline =
                *deadline.get_or_insert_with(|| tokio::time::Instant::now() + wait.min(MAX_WAIT));
            // The leader never sends: `changed` returns (with an error) once its sender is
            // dropped, which happens after it stored or gave up, even if that already happened.
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                self.shared.lock().misses += 1;
                return Lookup::Miss(self.fill(key, req_headers, None));
            }
        }
    }

    fn fill(&self, key: &str, req_headers: &HeaderMap, slot: Option<Slot>) -> Fill {
        Fill {
            shared: self.shared.clone(),
            key: key.to_owned(),
            req_headers: req_headers.clone(),
            slot,
        }
    }

    /// Remove every stored variant of `key`; returns how many. Callers should do this after a
    /// successful unsafe request (POST, PUT, DELETE, PATCH) to the same URI (RFC 9111 §4.4).
    pub fn purge(&self, key: &str) -> usize {
        let mut inner = self.shared.lock();
        let mut n = 0;
        while inner.remove_at(key, 0).is_some() {
            n += 1;
        }
        n
    }

    pub fn stats(&self) -> CacheStats {
        let inner = self.shared.lock();
        CacheStats {
            hits: inner.hits,
            misses: inner.misses,
            bytes: inner.bytes as u64,
            entries: inner.lru.len() as u64,
            evictions: inner.evictions,
            coalesced: inner.coalesced,
            bypasses: self.shared.bypasses.load(Ordering::Relaxed),
        }
    }
}

/// The coalescing slot of a leader; dropping it (the watch sender) wakes every waiter.
struct Slot {
    id: u64,
    _tx: watch::Sender<()>,
}

/// The right (and duty) to fill a missed key. Holds the key's coalescing slot when it is the
/// leader; `Drop` releases it without storing.
pub struct Fill {
    shared: Arc<Shared>,
    key: String,
    /// The request's headers, for the Vary values of whatever response comes back.
    req_headers: HeaderMap,
    slot: Option<Slot>,
}

impl fmt::Debug for Fill {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fill")
            .field("key", &self.key)
            .field("leader", &self.is_leader())
            .finish()
    }
}

impl Drop for Fill {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            self.shared.lock().release(&self.key, slot.id);
            // `slot` (the sender) drops here, after the slot left the map: waiters that wake
            // find it gone and exactly one of them claims it anew.
        }
    }
}

impl Fill {
    /// Whether others are waiting on this fill (false for uncoalesced misses).
    pub fn is_leader(&self) -> bool {
        self.slot.is_some()
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// Decide from the response head whether it may be stored (status, Cache-Control, Vary,
    /// Set-Cookie, explicit freshness, `Content-Length` within `max_object_bytes`); callers use
    /// it to decide whether to buffer the body (or, without a length, keep a copy of it as it
    /// streams).
    pub fn cacheable(&self, status: StatusCode, resp_headers: &HeaderMap) -> bool {
        let too_big = resp_headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| parse_delta(v.as_bytes()))
            .is_some_and(|n| n > self.shared.max_object_bytes as u64);
        !too_big && policy(status, resp_headers, self.shared.now()).is_some()
    }

    /// Store a complete response (if cacheable, body <= `max_object_bytes` and the entry fits
    /// in `max_bytes`; else nothing) and wake waiters.
    pub fn store(mut self, status: StatusCode, resp_headers: &HeaderMap, body: Bytes) {
        let shared = self.shared.clone();
        let now = shared.now();
        let stored = match policy(status, resp_headers, now) {
            Some(p) if body.len() <= shared.max_object_bytes => {
                let headers = storable_headers(status, resp_headers, body.len());
                let vary: Vec<VaryField> = p
                    .vary
                    .into_iter()
                    .map(|name| VaryField {
                        values: self
                            .req_headers
                            .get_all(&name)
                            .iter()
                            .map(|v| v.as_bytes().trim_ascii().to_vec())
                            .collect(),
                        name,
                    })
                    .collect();
                let size = entry_size(&self.key, &headers, &body, &vary);
                (size <= shared.max_bytes).then(|| Stored {
                    status,
                    headers,
                    body,
                    stored_at: now,
                    initial_age: p.initial_age,
                    lifetime: p.lifetime,
                    vary,
                    size,
                    clock: shared.clock.clone(),
                })
            }
            _ => None,
        };
        let slot = self.slot.take();
        {
            let mut inner = shared.lock();
            if let Some(stored) = stored {
                inner.insert(&self.key, stored, &self.req_headers, shared.max_bytes);
            }
            if let Some(slot) = &slot {
                inner.release(&self.key, slot.id);
            }
        }
        drop(slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Instant, UNIX_EPOCH};

    const WAIT: Duration = Duration::from_secs(10);

    type Now = Arc<Mutex<SystemTime>>;

    fn clocked(max_bytes: usize, max_object: usize) -> (Cache, Now) {
        let t: Now = Arc::new(Mutex::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000)));
        let c = t.clone();
        let clock: Clock = Arc::new(move || *c.lock().unwrap());
        (Cache::with_clock(max_bytes, max_object, clock), t)
    }

    fn advance(t: &Now, secs: u64) {
        *t.lock().unwrap() += Duration::from_secs(secs);
    }

    fn now(t: &Now) -> SystemTime {
        *t.lock().unwrap()
    }

    fn hdrs(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_bytes(v).unwrap(),
            );
        }
        h
    }

    fn cc(v: &str) -> HeaderMap {
        hdrs(&[("cache-control", v.as_bytes())])
    }

    async fn get(cache: &Cache, key: &str, req: &HeaderMap) -> Lookup {
        cache.lookup(&Method::GET, key, req, WAIT).await
    }

    fn hit(l: Lookup) -> Arc<Stored> {
        match l {
            Lookup::Hit(s) => s,
            other => panic!("expected a hit, got {other:?}"),
        }
    }

    fn miss(l: Lookup) -> Fill {
        match l {
            Lookup::Miss(f) => f,
            other => panic!("expected a miss, got {other:?}"),
        }
    }

    /// Miss, store `body` with these response headers (status 200).
    async fn put(cache: &Cache, key: &str, req: &HeaderMap, resp: &HeaderMap, body: &'static str) {
        miss(get(cache, key, req).await).store(
            StatusCode::OK,
            resp,
            Bytes::from_static(body.as_bytes()),
        );
    }

    fn age(s: &Stored) -> String {
        let r = s.to_response(false);
        r.headers()[header::AGE].to_str().unwrap().to_owned()
    }

    #[test]
    fn shareable_across_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Cache>();
        send_sync::<Fill>();
        send_sync::<Lookup>();
        send_sync::<Stored>();
    }

    #[tokio::test]
    async fn max_age_hit_then_expiry() {
        let (cache, t) = clocked(1 << 20, 1 << 16);
        let req = HeaderMap::new();
        put(&cache, "h/a", &req, &cc("public, max-age=10"), "one").await;
        let s = hit(get(&cache, "h/a", &req).await);
        assert_eq!(s.body, "one");
        assert_eq!(age(&s), "0");
        advance(&t, 9);
        let s = hit(get(&cache, "h/a", &req).await);
        assert_eq!(age(&s), "9");
        let r = s.to_response(false);
        assert_eq!(r.headers()["x-cache"], "HIT");
        assert_eq!(r.status(), StatusCode::OK);
        advance(&t, 1);
        let f = miss(get(&cache, "h/a", &req).await);
        assert!(f.is_leader());
        let st = cache.stats();
        assert_eq!((st.entries, st.bytes), (0, 0), "stale entry removed");
        assert_eq!((st.hits, st.misses), (2, 2));
    }

    #[tokio::test]
    async fn age_header_increases_and_includes_upstream_age() {
        let (cache, t) = clocked(1 << 20, 1 << 16);
        let req = HeaderMap::new();
        let resp = hdrs(&[("cache-control", b"max-age=60"), ("age", b"5")]);
        put(&cache, "h/a", &req, &resp, "x").await;
        let s = hit(get(&cache, "h/a", &req).await);
        assert_eq!(age(&s), "5");
        assert_eq!(
            s.headers.get_all(header::AGE).iter().count(),
            0,
            "upstream Age not stored"
        );
        advance(&t, 3);
        assert_eq!(age(&s), "8");
        assert_eq!(age(&hit(get(&cache, "h/a", &req).await)), "8");
        advance(&t, 51); // age 59
        hit(get(&cache, "h/a", &req).await);
        advance(&t, 1); // age 60 = lifetime: stale
        drop(miss(get(&cache, "h/a", &req).await));
        // Already used up upstream: not stored.
        let f = miss(get(&cache, "h/b", &req).await);
        let used = hdrs(&[("cache-control", b"max-age=60"), ("age", b"60")]);
        assert!(!f.cacheable(StatusCode::OK, &used));
        f.store(StatusCode::OK, &used, Bytes::from_static(b"y"));
        assert_eq!(cache.stats().entries, 0);
    }

    #[tokio::test]
    async fn s_maxage_takes_precedence_over_max_age() {
        let (cache, t) = clocked(1 << 20, 1 << 16);
        let req = HeaderMap::new();
        put(&cache, "h/long", &req, &cc("max-age=1, s-maxage=100"), "l").await;
        put(&cache, "h/short", &req, &cc("s-maxage=2, max-age=100"), "s").await;
        advance(&t, 50);
        assert_eq!(hit(get(&cache, "h/long", &req).await).lifetime, 100);
        drop(miss(get(&cache, "h/short", &req).await));
    }

    #[tokio::test]
    async fn expires_minus_date() {
        let (cache, t) = clocked(1 << 20, 1 << 16);
        let req = HeaderMap::new();
        let date = now(&t) - Duration::from_secs(1000); // origin clock behind ours
        let resp = hdrs(&[
            ("date", httpdate::fmt_http_date(date).as_bytes()),
            (
                "expires",
                httpdate::fmt_http_date(date + Duration::from_secs(30)).as_bytes(),
            ),
        ]);
        put(&cache, "h/a", &req, &resp, "a").await;
        assert_eq!(hit(get(&cache, "h/a", &req).await).lifetime, 30);
        advance(&t, 29);
        hit(get(&cache, "h/a", &req).await);
        advance(&t, 1);
        drop(miss(get(&cache, "h/a", &req).await));

        // No Date: Expires minus now.
        let exp = now(&t) + Duration::from_secs(20);
        let resp = hdrs(&[("expires", httpdate::fmt_http_date(exp).as_bytes())]);
        put(&cache, "h/b", &req, &resp, "b").await;
        assert_eq!(hit(get(&cache, "h/b", &req).await).lifetime, 20);

        // max-age wins over Expires.
        let resp = hdrs(&[
            ("cache-control", b"max-age=5"),
            ("expires", httpdate::fmt_http_date(exp).as_bytes()),
        ]);
        put(&cache, "h/c", &req, &resp, "c").await;
        assert_eq!(hit(get(&cache, "h/c", &req).await).lifetime, 5);

        // Invalid or past Expires: not stored.
        for e in [
            &b"0"[..],
            httpdate::fmt_http_date(now(&t) - Duration::from_secs(1)).as_bytes(),
        ] {
            let f = miss(get(&cache, "h/d", &req).await);
            let resp = hdrs(&[("expires", e)]);
            assert!(!f.cacheable(StatusCode::OK, &resp));
            f.store(StatusCode::OK, &resp, Bytes::new());
        }
        drop(miss(get(&cache, "h/d", &req).await));
    }

    #[tokio::test]
    async fn uncacheable_responses_are_not_stored() {
        let (cache, _t) = clocked(1 << 20, 1 << 16);
        let req = HeaderMap::new();
        let cases: Vec<(u16, HeaderMap)> = vec![
            (200, cc("no-store, max-age=60")),
            (200, cc("private, max-age=60")),
            (200, cc("max-age=60, private=\"set-cookie, x\"")),
            (200, cc("no-cache, max-age=60")),
            (200, cc("NO-CACHE=\"x\", max-age=60")),
            (200, cc("max-age=0")),
            (200, cc("public")),
            (200, HeaderMap::new()),
            (
                200,
                hdrs(&[("cache-control", b"max-age=60"), ("vary", b"*")]),
            ),
            (
                200,
                hdrs(&[("cache-control", b"max-age=60"), ("vary", b"accept, *")]),
            ),
            (
                200,
                hdrs(&[("cache-control", b"max-age=60"), ("set-cookie", b"a=b")]),
            ),
            (500, cc("max-age=60")),
            (206, cc("max-age=60")),
            (302, cc("max-age=60")),
            (304, cc("max-age=60")),
        ];
        for (status, resp) in &cases {
            let status = StatusCode::from_u16(*status).unwrap();
            let f = miss(get(&cache, "h/x", &req).await);
            assert!(!f.cacheable(status, resp), "{status} {resp:?}");
            f.store(status, resp, Bytes::from_static(b"body"));
            assert_eq!(cache.stats().entries, 0, "{status} {resp:?} was stored");
        }
        // The heuristically cacheable statuses are stored with explicit freshness.
        for status in [200, 203, 204, 300, 301, 308, 404, 410] {
            let status = StatusCode::from_u16(status).unwrap();
            let key = format!("h/{status}");
            let f = miss(get(&cache, &key, &req).await);
            assert!(f.cacheable(status, &cc("max-age=60")));
            f.store(status, &cc("max-age=60"), Bytes::new());
            assert_eq!(hit(get(&cache, &key, &req).await).status, status);
        }
    }

    #[tokio::test]
    async fn request_side_bypass() {
        let (cache, _t) = clocked(1 << 20, 1 << 16);
        let plain = HeaderMap::new();
        put(&cache, "h/a", &plain, &cc("max-age=60"), "a").await;
        let auth = hdrs(&[("authorization", b"Bearer x")]);
        assert!(matches!(get(&cache, "h/a", &auth).await, Lookup::Bypass));
        assert!(matches!(
            get(&cache, "h/a", &cc("no-store")).await,
            Lookup::Bypass
        ));
        assert!(matches!(
            get(&cache, "h/a", &cc("No-Store")).await,
            Lookup::Bypass
        ));
        let if_match = hdrs(&[("if-match", b"\"x\"")]);
        assert!(matches!(
            get(&cache, "h/a", &if_match).await,
            Lookup::Bypass
        ));
        for m in [Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS] {
            assert!(matches!(
                cache.lookup(&m, "h/a", &plain, WAIT).await,
                Lookup::Bypass
            ));
        }
        let st = cache.stats();
        assert_eq!((st.bypasses, st.hits, st.misses), (8, 0, 1));
        // A bypass neither waits nor takes the slot.
        let leader = miss(get(&cache, "h/b", &plain).await);
        assert!(matches!(get(&cache, "h/b", &auth).await, Lookup::Bypass));
        drop(leader);
    }

    #[tokio::test]
    async fn request_no_cache_and_max_age_refresh() {
        let (cache, t) = clocked(1 << 20, 1 << 16);
        let plain = HeaderMap::new();
        put(&cache, "h/a", &plain, &cc("max-age=100"), "old").await;
        let bytes = cache.stats().bytes;
        let f = miss(get(&cache, "h/a", &cc("no-cache")).await);
        assert!(f.is_leader());
        // Others are still served the fresh entry meanwhile, without waiting.
        assert_eq!(hit(get(&cache, "h/a", &plain).await).body, "old");
        f.store(
            StatusCode::OK,
            &cc("max-age=100"),
            Bytes::from_static(b"new"),
        );
        assert_eq!(hit(get(&cache, "h/a", &plain).await).body, "new");
        assert_eq!(cache.stats().entries, 1, "replaced, not added");
        assert_eq!(cache.stats().bytes, bytes, "replacement keeps byte count");
        drop(miss(get(&cache, "h/a", &cc("max-age=0")).await));
        advance(&t, 10);
        drop(miss(get(&cache, "h/a", &cc("max-age=5")).await));
        hit(get(&cache, "h/a", &cc("max-age=10")).await);
        drop(miss(get(&cache, "h/a", &cc("min-fresh=91")).await));
        hit(get(&cache, "h/a", &cc("min-fresh=90")).await);
        hit(get(&cache, "h/a", &plain).await);
    }

    #[tokio::test]
    async fn vary_variants_kept_apart() {
        let (cache, _t) = clocked(1 << 20, 1 << 16);
        let resp = hdrs(&[
            ("cache-control", b"max-age=60"),
            ("vary", b"Accept-Encoding"),
        ]);
        let gzip = hdrs(&[("accept-encoding", b"gzip")]);
        let ident = hdrs(&[("accept-encoding", b"identity")]);
        let none = HeaderMap::new();
        put(&cache, "h/v", &gzip, &resp, "G").await;
        put(&cache, "h/v", &ident, &resp, "I").await;
        put(&cache, "h/v", &none, &resp, "N").await;
        assert_eq!(cache.stats().entries, 3);
        assert_eq!(hit(get(&cache, "h/v", &gzip).await).body, "G");
        assert_eq!(hit(get(&cache, "h/v", &ident).await).body, "I");
        assert_eq!(hit(get(&cache, "h/v", &none).await).body, "N");
        let padded = hdrs(&[("accept-encoding", b"gzip ")]);
        assert_eq!(hit(get(&cache, "h/v", &padded).await).body, "G");
        let two = hdrs(&[("accept-encoding", b"gzip"), ("accept-encoding", b"br")]);
        drop(miss(get(&cache, "h/v", &two).await));
        let other = hdrs(&[("accept-encoding", b"br")]);
        drop(miss(get(&cache, "h/v", &other).await));
        // Replacing one variant leaves the others alone.
        let refresh = hdrs(&[("cache-control", b"no-cache"), ("accept-encoding", b"gzip")]);
        put(&cache, "h/v", &refresh, &resp, "G2").await;
        assert_eq!(cache.stats().entries, 3);
        assert_eq!(hit(get(&cache, "h/v", &gzip).await).body, "G2");
        assert_eq!(hit(get(&cache, "h/v", &ident).await).body, "I");
    }

    #[tokio::test]
    async fn vary_waiter_with_other_value_becomes_leader() {
        let (cache, _t) = clocked(1 << 20, 1 << 16);
        let resp = hdrs(&[
            ("cache-control", b"max-age=60"),
            ("vary", b"accept-encoding"),
        ]);
        let gzip = hdrs(&[("accept-encoding", b"gzip")]);
        let br = hdrs(&[("accept-encoding", b"br")]);
        let leader = miss(get(&cache, "h/v", &gzip).await);
        let (waiter, same, ()) =
            tokio::join!(get(&cache, "h/v", &br), get(&cache, "h/v", &gzip), async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                leader.store(StatusCode::OK, &resp, Bytes::from_static(b"G"));
            });
        let f = miss(waiter);
        assert!(f.is_leader());
        assert_eq!(hit(same).body, "G");
        assert_eq!(cache.stats().coalesced, 2);
        f.store(StatusCode::OK, &resp, Bytes::from_static(b"B"));
        assert_eq!(hit(get(&cache, "h/v", &br).await).body, "B");
    }

    #[tokio::test]
    async fn lru_eviction_order_and_byte_accounting() {
        let req = HeaderMap::new();
        let resp = cc("max-age=60");
        let body = "0123456789".repeat(10);
        let body: &'static str = Box::leak(body.into_boxed_str());
        let (probe, _t) = clocked(1 << 20, 1 << 16);
        put(&probe, "k/1", &req, &resp, body).await;
        let size = probe.stats().bytes as usize;
        assert!(size > body.len() + 3);
        let max = 3 * size + size / 2;
        let (cache, _t) = clocked(max, 1 << 16);
        for k in ["k/1", "k/2", "k/3"] {
            put(&cache, k, &req, &resp, body).await;
        }
        assert_eq!(cache.stats().bytes as usize, 3 * size);
        hit(get(&cache, "k/1", &req).await); // order now 2, 3, 1
        put(&cache, "k/4", &req, &resp, body).await; // evicts 2
        let st = cache.stats();
        assert_eq!(
            (st.bytes as usize, st.entries, st.evictions),
            (3 * size, 3, 1)
        );
        drop(miss(get(&cache, "k/2", &req).await));
        put(&cache, "k/5", &req, &resp, body).await; // order was 3, 1, 4: evicts 3
        drop(miss(get(&cache, "k/3", &req).await));
        for k in ["k/1", "k/4", "k/5"] {
            hit(get(&cache, k, &req).await);
        }
        let st = cache.stats();
        assert_eq!(
            (st.bytes as usize, st.entries, st.evictions),
            (3 * size, 3, 2)
        );
        assert!(st.bytes as usize <= max);
        // A bigger object evicts as many as needed and the count never exceeds the budget.
        let big: &'static str = Box::leak("x".repeat(size).into_boxed_str()); // ~2 entries
        put(&cache, "k/6", &req, &resp, big).await;
        let st = cache.stats();
        assert!(st.bytes as usize <= max, "{st:?}");
        assert_eq!(st.entries, 2);
        hit(get(&cache, "k/6", &req).await);
        hit(get(&cache, "k/5", &req).await); // the most recent of the small ones survived
        for k in ["k/1", "k/4", "k/5", "k/6"] {
            assert!(cache.purge(k) <= 1);
        }
        assert_eq!((cache.stats().bytes, cache.stats().entries), (0, 0));
    }

    #[tokio::test]
    async fn oversized_objects_not_stored() {
        let (cache, _t) = clocked(1 << 20, 10);
        let req = HeaderMap::new();
        let f = miss(get(&cache, "h/a", &req).await);
        let resp = hdrs(&[("cache-control", b"max-age=60"), ("content-length", b"11")]);
        assert!(!f.cacheable(StatusCode::OK, &resp));
        assert!(f.cacheable(StatusCode::OK, &cc("max-age=60")));
        f.store(
            StatusCode::OK,
            &cc("max-age=60"),
            Bytes::from_static(b"01234567890"),
        );
        assert_eq!(cache.stats().entries, 0);
        put(&cache, "h/a", &req, &cc("max-age=60"), "0123456789").await;
        assert_eq!(cache.stats().entries, 1);
        // An entry that cannot fit in max_bytes at all is not stored (and evicts nothing).
        let (tiny, _t) = clocked(100, 1 << 16);
        put(&tiny, "h/a", &req, &cc("max-age=60"), "0123456789").await;
        assert_eq!((tiny.stats().entries, tiny.stats().bytes), (0, 0));
    }

    #[tokio::test]
    async fn head_served_from_get_and_head_miss_not_stored() {
        let (cache, _t) = clocked(1 << 20, 1 << 16);
        let req = HeaderMap::new();
        let resp = hdrs(&[("cache-control", b"max-age=60"), ("etag", b"\"v1\"")]);
        put(&cache, "h/a", &req, &resp, "hello").await;
        let s = hit(cache.lookup(&Method::HEAD, "h/a", &req, WAIT).await);
        let head = s.to_response(true);
        let full = s.to_response(false);
        assert!(head.body().is_empty());
        assert_eq!(full.body(), "hello");
        assert_eq!(head.headers(), full.headers());
        assert_eq!(head.headers()[header::CONTENT_LENGTH], "5");
        assert_eq!(s.respond(&Method::HEAD, &req).body().len(), 0);
        // HEAD miss: Bypass, no slot taken, nothing stored.
        assert!(matches!(
            cache.lookup(&Method::HEAD, "h/b", &req, WAIT).await,
            Lookup::Bypass
        ));
        let f = miss(get(&cache, "h/b", &req).await);
        assert!(f.is_leader());
        // A HEAD does not wait for an in-flight GET either.
        assert!(matches!(
            cache.lookup(&Method::HEAD, "h/b", &req, WAIT).await,
            Lookup::Bypass
        ));
        drop(f);
        let st = cache.stats();
        assert_eq!(
            (st.hits, st.misses, st.bypasses, st.coalesced),
            (1, 4, 0, 0)
        );
    }

    #[tokio::test]
    async fn hop_by_hop_age_and_x_cache_stripped() {
        let (cache, _t) = clocked(1 << 20, 1 << 16);
        let req = HeaderMap::new();
        let resp = hdrs(&[
            ("cache-control", b"max-age=60"),
            ("connection", b"close, X-Private-Hop"),
            ("x-private-hop", b"1"),
            ("keep-alive", b"timeout=5"),
            ("transfer-encoding", b"chunked"),
            ("upgrade", b"h2c"),
            ("proxy-connection", b"keep-alive"),
            ("te", b"trailers"),
            ("x-cache", b"MISS"),
            ("age", b"2"),
            ("content-length", b"999"),
            ("x-kept", b"yes"),
            ("x-kept", b"twice"),
        ]);
        put(&cache, "h/a", &req, &resp, "abc").await;
        let s = hit(get(&cache, "h/a", &req).await);
        for gone in [
            "connection",
            "x-private-hop",
            "keep-alive",
            "transfer-encoding",
            "upgrade",
            "proxy-connection",
            "te",
            "x-cache",
            "age",
        ] {
            assert!(!s.headers.contains_key(gone), "{gone} stored");
        }
        assert_eq!(s.headers[header::CONTENT_LENGTH], "3");
        assert_eq!(s.headers.get_all("x-kept").iter().count(), 2);
        let r = s.to_response(false);
        assert_eq!(
            r.headers().get_all("x-cache").iter().collect::<Vec<_>>(),
            ["HIT"]
        );
        assert_eq!(r.headers().get_all("age").iter().collect::<Vec<_>>(), ["2"]);
        // 204 gets no Content-Length.
        put(&cache, "h/204", &req, &cc("max-age=60"), "").await;
        let f = miss(get(&cache, "h/nc", &req).await);
        f.store(StatusCode::NO_CONTENT, &cc("max-age=60"), Bytes::new());
        assert!(!hit(get(&cache, "h/nc", &req).await)
            .headers
            .contains_key(header::CONTENT_LENGTH));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn fifty_concurrent_lookups_one_miss() {
        let cache = Arc::new(Cache::new(1 << 20, 1 << 16));
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move {
                    match get(&cache, "h/hot", &HeaderMap::new()).await {
                        Lookup::Hit(s) => {
                            assert_eq!(s.body, "hot");
                            true
                        }
                        Lookup::Miss(f) => {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            f.store(
                                StatusCode::OK,
                                &cc("max-age=60"),
                                Bytes::from_static(b"hot"),
                            );
                            false
                        }
                        Lookup::Bypass => panic!("bypass"),
                    }
                })
            })
            .collect();
        let mut hits = 0;
        for t in tasks {
            hits += usize::from(t.await.unwrap());
        }
        assert_eq!(hits, 49);
        let st = cache.stats();
        assert_eq!((st.hits, st.misses), (49, 1));
        assert!(st.coalesced >= 1 && st.coalesced <= 49);
    }

    #[test]
    fn several_current_thread_runtimes_share_one_cache() {
        let cache = Arc::new(Cache::new(1 << 20, 1 << 16));
        let threads: Vec<_> = (0..5)
            .map(|_| {
                let cache = cache.clone();
                std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_time()
                        .build()
                        .unwrap();
                    rt.block_on(async {
                        let mut misses = 0;
                        let tasks: Vec<_> = (0..10)
                            .map(|_| {
                                let cache = cache.clone();
                                tokio::spawn(async move {
                                    match get(&cache, "h/hot", &HeaderMap::new()).await {
                                        Lookup::Miss(f) => {
                                            tokio::time::sleep(Duration::from_millis(100)).await;
                                            f.store(
                                                StatusCode::OK,
                                                &cc("max-age=60"),
                                                Bytes::new(),
                                            );
                                            1
                                        }
                                        _ => 0,
                                    }
                                })
                            })
                            .collect();
                        for t in tasks {
                            misses += t.await.unwrap();
                        }
                        misses
                    })
                })
            })
            .collect();
        let misses: i32 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(misses, 1);
        assert_eq!(cache.stats().hits, 49);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn dropped_fill_releases_waiters_promptly_and_one_leads() {
        let cache = Arc::new(Cache::new(1 << 20, 1 << 16));
        let leader = miss(get(&cache, "h/e", &HeaderMap::new()).await);
        let started = Instant::now();
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move {
                    match get(&cache, "h/e", &HeaderMap::new()).await {
                        Lookup::Miss(f) => {
                            assert!(f.is_leader());
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            f.store(StatusCode::OK, &cc("max-age=60"), Bytes::from_static(b"ok"));
                            1
                        }
                        Lookup::Hit(_) => 0,
                        Lookup::Bypass => panic!("bypass"),
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(leader); // upstream error: nothing stored
        let mut misses = 0;
        for t in tasks {
            misses += t.await.unwrap();
        }
        assert_eq!(misses, 1, "exactly one waiter becomes the next leader");
        assert!(started.elapsed() < Duration::from_secs(2), "waiters hung");
        assert_eq!(cache.stats().hits, 9);
    }

    #[tokio::test]
    async fn uncacheable_answer_releases_waiters_one_after_another() {
        let cache = Cache::new(1 << 20, 1 << 16);
        let started = Instant::now();
        let lookups = (0..5).map(|i| {
            let cache = &cache;
            async move {
                tokio::time::sleep(Duration::from_millis(i)).await;
                let f = miss(get(cache, "h/u", &HeaderMap::new()).await);
                assert!(f.is_leader());
                tokio::time::sleep(Duration::from_millis(10)).await;
                f.store(StatusCode::OK, &cc("no-store"), Bytes::new());
            }
        });
        let all: Vec<_> = lookups.collect();
        let mut all = all.into_iter();
        let (a, b, c, d, e) = (
            all.next().unwrap(),
            all.next().unwrap(),
            all.next().unwrap(),
            all.next().unwrap(),
            all.next().unwrap(),
        );
        tokio::join!(a, b, c, d, e);
        assert!(started.elapsed() < Duration::from_secs(2));
        let st = cache.stats();
        assert_eq!((st.misses, st.coalesced, st.entries), (5, 4, 0));
    }

    #[tokio::test]
    async fn wait_timeout_gives_uncoalesced_miss() {
        let (cache, _t) = clocked(1 << 20, 1 << 16);
        let req = HeaderMap::new();
        let leader = miss(get(&cache, "h/slow", &req).await);
        let started = Instant::now();
        let l = cache
            .lookup(&Method::GET, "h/slow", &req, Duration::from_millis(50))
            .await;
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(50) && elapsed < Duration::from_secs(2));
        let own = miss(l);
        assert!(!own.is_leader());
        assert_eq!(cache.stats().coalesced, 1);
        // Zero wait: immediately a miss of its own, not counted as coalesced.
        let zero = miss(
            cache
                .lookup(&Method::GET, "h/slow", &req, Duration::ZERO)
                .await,
        );
        assert!(!zero.is_leader());
        drop(zero); // releases nobody, and leaves the leader's slot alone
        assert_eq!(cache.shared.lock().inflight.len(), 1);
        own.store(StatusCode::OK, &cc("max-age=60"), Bytes::from_static(b"s"));
        assert_eq!(hit(get(&cache, "h/slow", &req).await).body, "s");
        assert_eq!(cache.shared.lock().inflight.len(), 1);
        drop(leader);
        assert_eq!(cache.shared.lock().inflight.len(), 0);
        assert_eq!(cache.stats().coalesced, 1);
    }

    #[tokio::test]
    async fn conditional_requests() {
        let (cache, _t) = clocked(1 << 20, 1 << 16);
        let lm = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(1_600_000_000));
        let later = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(1_600_000_100));
        let earlier = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(1_500_000_000));
        let resp = hdrs(&[
            ("cache-control", b"max-age=60"),
            ("etag", b"W/\"v,1\""),
            ("last-modified", lm.as_bytes()),
            ("x-other", b"1"),
        ]);
        put(&cache, "h/a", &HeaderMap::new(), &resp, "body").await;
        let inm = hdrs(&[("if-none-match", b"\"x\", \"v,1\"")]);
        let s = hit(get(&cache, "h/a", &inm).await);
        let r = s.respond(&Method::GET, &inm);
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
        assert!(r.body().is_empty());
        assert_eq!(r.headers()[header::ETAG], "W/\"v,1\"");
        assert!(!r.headers().contains_key("x-other"));
        assert!(!r.headers().contains_key(header::CONTENT_LENGTH));
        let other = hdrs(&[
            ("if-none-match", b"\"v2\""),
            ("if-modified-since", later.as_bytes()),
        ]);
        assert_eq!(
            s.respond(&Method::GET, &other).status(),
            StatusCode::OK,
            "INM wins over IMS"
        );
        assert!(s.not_modified(&hdrs(&[("if-none-match", b"*")])));
        assert!(s.not_modified(&hdrs(&[("if-modified-since", later.as_bytes())])));
        assert!(s.not_modified(&hdrs(&[("if-modified-since", lm.as_bytes())])));
        assert!(!s.not_modified(&hdrs(&[("if-modified-since", earlier.as_bytes())])));
        assert!(!s.not_modified(&hdrs(&[("if-modified-since", b"yesterday")])));
        // A conditional or range miss goes upstream without taking the slot.
        let f = miss(get(&cache, "h/b", &inm).await);
        assert!(!f.is_leader());
        let f = miss(get(&cache, "h/b", &hdrs(&[("range", b"bytes=0-1")])).await);
        assert!(!f.is_leader());
        // ... but its full 200 is still stored.
        f.store(StatusCode::OK, &resp, Bytes::from_static(b"b"));
        hit(get(&cache, "h/b", &HeaderMap::new()).await);
    }

    #[tokio::test]
    async fn garbage_header_values_do_not_panic() {
        let (cache, _t) = clocked(1 << 20, 1 << 16);
        let junk: &[&[u8]] = &[
            b"\xff\xfe",
            b"max-age=\xff",
            b"max-age=99999999999999999999999999999999",
            b"max-age=-5",
            b"max-age=",
            b"max-age=\"",
            b"=",
            b",,,\"unterminated",
            b"\\",
            b"s-maxage=abc, max-age=100",
            b"max-age=18446744073709551616",
            b"Sun, 06 Nov 1994 08:49:37 GMT",
            b"Fri, 31 Dec 9999 23:59:59 GMT",
            b"*",
        ];
        let fields = [
            "cache-control",
            "expires",
            "date",
            "age",
            "vary",
            "connection",
            "content-length",
            "etag",
            "last-modified",
        ];
        for (i, v) in junk.iter().enumerate() {
            for f in fields {
                let key = format!("h/{i}/{f}");
                let req = hdrs(&[
                    ("cache-control", v),
                    ("accept-encoding", v),
                    ("if-none-match", v),
                    ("if-modified-since", v),
                ]);
                let mut resp = hdrs(&[(f, v)]);
                if f != "cache-control" {
                    resp.append(
                        header::CACHE_CONTROL,
                        HeaderValue::from_static("max-age=60"),
                    );
                }
                resp.append(header::VARY, HeaderValue::from_static("accept-encoding"));
                if let Lookup::Miss(fill) = get(&cache, &key, &req).await {
                    let _ = fill.cacheable(StatusCode::OK, &resp);
                    fill.store(StatusCode::OK, &resp, Bytes::from_static(b"x"));
                }
                if let Lookup::Hit(s) = get(&cache, &key, &req).await {
                    let _ = s.respond(&Method::GET, &req);
                    let _ = s.age();
                }
            }
        }
        // Huge max-age is clamped, not overflowed, and still stored.
        put(
            &cache,
            "h/huge",
            &HeaderMap::new(),
            &cc("max-age=99999999999999999999999"),
            "h",
        )
        .await;
        assert_eq!(
            hit(get(&cache, "h/huge", &HeaderMap::new()).await).lifetime,
            MAX_DELTA
        );
        // Garbage numbers mean "stale", not "forever".
        let f = miss(get(&cache, "h/neg", &HeaderMap::new()).await);
        assert!(!f.cacheable(StatusCode::OK, &cc("max-age=-5")));
        assert!(!f.cacheable(StatusCode::OK, &cc("s-maxage=abc, max-age=100")));
        let h = hdrs(&[("cache-control", b"max-age=60"), ("age", b"junk")]);
        assert!(f.cacheable(StatusCode::OK, &h), "invalid Age is ignored");
        // Huge waits do not overflow the deadline.
        let none = HeaderMap::new();
        let leader = miss(get(&cache, "h/w", &none).await);
        let (l, ()) = tokio::join!(
            cache.lookup(&Method::GET, "h/w", &none, Duration::MAX),
            async { drop(leader) }
        );
        drop(miss(l));
    }
}
