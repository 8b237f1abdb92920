//! The RFC 9111 rules the cache applies, without its storage: whether a response head may be
//! stored and for how long (`policy`), which of its headers are kept, what an entry costs,
//! and the readers of Cache-Control directives, delta-seconds, HTTP dates and entity tags.

use super::*;

/// What a storable response head yields.
pub(super) struct Policy {
    pub(super) lifetime: u64,
    pub(super) initial_age: u64,
    pub(super) vary: Vec<HeaderName>,
}

/// `Some` iff a response with this head may be stored (rules in the module doc).
pub(super) fn policy(status: StatusCode, h: &HeaderMap, now: SystemTime) -> Option<Policy> {
    if !matches!(
        status.as_u16(),
        200 | 203 | 204 | 300 | 301 | 308 | 404 | 410
    ) {
        return None;
    }
    let cc = Directives::parse_values(h.get_all(header::CACHE_CONTROL));
    if cc.no_store || cc.no_cache || cc.private || h.contains_key(header::SET_COOKIE) {
        return None;
    }
    let mut vary = Vec::new();
    for v in h.get_all(header::VARY) {
        for item in split_list(v.as_bytes()) {
            // `*` (a valid token, so checked first), or anything that is not a field name:
            // such a response could never be matched safely.
            if item == b"*" {
                return None;
            }
            let name = HeaderName::from_bytes(item).ok()?;
            if !vary.contains(&name) {
                vary.push(name);
            }
        }
    }
    let lifetime = match cc.s_maxage.or(cc.max_age) {
        Some(secs) => secs,
        None => {
            // An invalid Expires means "already expired" (RFC 9111 §5.3).
            let expires = http_date(h.get(header::EXPIRES)?).unwrap_or(SystemTime::UNIX_EPOCH);
            let date = h.get(header::DATE).and_then(http_date).unwrap_or(now);
            expires.duration_since(date).map_or(0, |d| d.as_secs())
        }
    }
    .min(MAX_DELTA);
    // Age: first list member, ignored if invalid (RFC 9111 §5.1).
    let initial_age = h
        .get(header::AGE)
        .and_then(|v| {
            split_list(v.as_bytes())
                .first()
                .and_then(|a| parse_delta(a))
        })
        .unwrap_or(0);
    (lifetime > initial_age).then_some(Policy {
        lifetime,
        initial_age,
        vary,
    })
}

/// The headers kept in the cache: upstream's minus hop-by-hop, `Age`, `X-Cache`, with
/// `Content-Length` recomputed from the stored body.
pub(super) fn storable_headers(status: StatusCode, src: &HeaderMap, body_len: usize) -> HeaderMap {
    let mut named: Vec<HeaderName> = Vec::new();
    for v in src.get_all(header::CONNECTION) {
        named.extend(
            split_list(v.as_bytes())
                .into_iter()
                .filter_map(|t| HeaderName::from_bytes(t).ok()),
        );
    }
    let drop_field = |n: &HeaderName| {
        [
            header::CONNECTION,
            KEEP_ALIVE,
            header::TRANSFER_ENCODING,
            header::TE,
            header::TRAILER,
            header::UPGRADE,
            PROXY_CONNECTION,
            header::PROXY_AUTHENTICATE,
            header::AGE,
            X_CACHE,
            header::CONTENT_LENGTH,
        ]
        .contains(n)
            || named.contains(n)
    };
    let mut out = HeaderMap::with_capacity(src.len() + 1);
    for (name, value) in src {
        if !drop_field(name) {
            out.append(name.clone(), value.clone());
        }
    }
    if status != StatusCode::NO_CONTENT {
        out.insert(header::CONTENT_LENGTH, HeaderValue::from(body_len));
    }
    out
}

/// Bytes charged to an entry against `max_bytes`.
pub(super) fn entry_size(
    key: &str,
    headers: &HeaderMap,
    body: &Bytes,
    vary: &[VaryField],
) -> usize {
    let fields: usize = headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + FIELD_OVERHEAD)
        .sum();
    let vary: usize = vary
        .iter()
        .map(|f| f.name.as_str().len() + f.values.iter().map(|v| v.len() + 8).sum::<usize>())
        .sum();
    // The key's bytes are held once (the index and the LRU share one `Arc<str>`).
    ENTRY_OVERHEAD + key.len() + fields + vary + body.len()
}

/// The Cache-Control directives this cache acts on (request or response).
#[derive(Default)]
pub(super) struct Directives {
    pub(super) no_store: bool,
    pub(super) no_cache: bool,
    pub(super) private: bool,
    pub(super) max_age: Option<u64>,
    pub(super) s_maxage: Option<u64>,
    pub(super) min_fresh: Option<u64>,
}

impl Directives {
    pub(super) fn parse(h: &HeaderMap) -> Directives {
        Directives::parse_values(h.get_all(header::CACHE_CONTROL))
    }

    pub(super) fn parse_values(values: http::header::GetAll<'_, HeaderValue>) -> Directives {
        let mut d = Directives::default();
        for v in values {
            for item in split_list(v.as_bytes()) {
                let (name, arg) = match item.iter().position(|&b| b == b'=') {
                    Some(i) => (item[..i].trim_ascii(), Some(unquote(&item[i + 1..]))),
                    None => (item, None),
                };
                // A present but unusable value counts as 0 (stale), and a repeated directive
                // keeps its smallest value: both err towards not serving from cache.
                let secs = || arg.and_then(parse_delta).unwrap_or(0);
                let keep_min = |slot: &mut Option<u64>, v: u64| {
                    *slot = Some(slot.map_or(v, |o| o.min(v)));
                };
                let is = |s: &str| name.eq_ignore_ascii_case(s.as_bytes());
                if is("no-store") {
                    d.no_store = true;
                } else if is("no-cache") {
                    d.no_cache = true;
                } else if is("private") {
                    d.private = true;
                } else if is("max-age") {
                    keep_min(&mut d.max_age, secs());
                } else if is("s-maxage") {
                    keep_min(&mut d.s_maxage, secs());
                } else if is("min-fresh") {
                    keep_min(&mut d.min_fresh, secs());
                }
            }
        }
        d
    }

    /// Request-side limits on a fresh stored response (`max-age`, `min-fresh`).
    pub(super) fn accepts(&self, age: u64, lifetime: u64) -> bool {
        self.max_age.is_none_or(|m| age <= m)
            && self
                .min_fresh
                .is_none_or(|m| lifetime.saturating_sub(age) >= m)
    }
}

/// Split a comma-separated field value, respecting quoted strings; trimmed, empty items dropped.
pub(super) fn split_list(s: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, &b) in s.iter().enumerate() {
        if escaped {
            escaped = false;
        } else if quoted && b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            quoted = !quoted;
        } else if b == b',' && !quoted {
            out.push(s[start..i].trim_ascii());
            start = i + 1;
        }
    }
    out.push(s[start..].trim_ascii());
    out.retain(|item| !item.is_empty());
    out
}

pub(super) fn unquote(s: &[u8]) -> &[u8] {
    let s = s.trim_ascii();
    match s {
        [b'"', inner @ .., b'"'] => inner,
        _ => s,
    }
}

/// delta-seconds: ASCII digits only (quotes allowed around them), clamped to 2^31.
pub(super) fn parse_delta(s: &[u8]) -> Option<u64> {
    let s = unquote(s);
    if s.is_empty() {
        return None;
    }
    s.iter()
        .try_fold(0u64, |acc, &b| {
            b.is_ascii_digit()
                .then(|| acc.saturating_mul(10).saturating_add(u64::from(b - b'0')))
        })
        .map(|n| n.min(MAX_DELTA))
}

pub(super) fn http_date(v: &HeaderValue) -> Option<SystemTime> {
    let s = std::str::from_utf8(v.as_bytes()).ok()?;
    httpdate::parse_http_date(s.trim()).ok()
}

/// An entity tag without its weakness marker, for weak comparison.
pub(super) fn opaque_tag(t: &[u8]) -> &[u8] {
    t.strip_prefix(b"W/").unwrap_or(t)
}
