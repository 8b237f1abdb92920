//! Test and demo harness: real database servers in temporary directories.
//!
//! - [`pg`]: a real PostgreSQL primary plus streaming replicas on free loopback ports
//!   ([`pg::PgCluster`]), with roles for SCRAM, md5 and cleartext password authentication.
//! - [`mariadb`]: a real MariaDB primary plus GTID replicas on free loopback ports
//!   ([`mariadb::MariaCluster`]), with an application user and a proxy backend user.
//! - [`http`]: small real HTTP upstream servers (HTTP/1.1, h2c, WebSocket echo, cache and
//!   status knobs) for the edge's tests and `switchyard demo`.

pub mod http;
pub mod mariadb;
pub mod pg;

/// The TCP sockets of this host in state ESTABLISHED: (local port, remote port, the timer
/// armed on it, clock ticks until it fires), from `/proc/net/tcp` and `/proc/net/tcp6`. The
/// timer is 2 for a keepalive timer, 0 for none.
pub fn established_tcp_sockets() -> Vec<(u16, u16, u8, u64)> {
    let mut out = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let port = |a: &str| u16::from_str_radix(a.rsplit(':').next().unwrap(), 16).unwrap();
            if f.len() < 6 || f[3] != "01" {
                continue;
            }
            let (timer, when) = f[5].split_once(':').unwrap();
            out.push((
                port(f[1]),
                port(f[2]),
                u8::from_str_radix(timer, 16).unwrap(),
                u64::from_str_radix(when, 16).unwrap(),
            ));
        }
    }
    out
}

/// The timer of the one ESTABLISHED socket matching each of `wanted` (local port, remote
/// port or 0 for any) and the clock ticks until it fires, as [`established_tcp_sockets`]
/// gives them, read once none of them waits for an acknowledgement: right after an exchange a
/// socket has a retransmission (or loss probe) timer armed for a moment (timer 1). Panics
/// unless exactly one socket matches each.
pub fn socket_timers(wanted: &[(u16, u16)]) -> Vec<(u8, u64)> {
    let mut tries = 0;
    loop {
        let sockets = established_tcp_sockets();
        let timers: Vec<(u8, u64)> = wanted
            .iter()
            .map(|&(local, remote)| {
                let found: Vec<_> = sockets
                    .iter()
                    .filter(|s| s.0 == local && (remote == 0 || s.1 == remote))
                    .collect();
                assert_eq!(found.len(), 1, "{local}->{remote}: {sockets:?}");
                (found[0].2, found[0].3)
            })
            .collect();
        tries += 1;
        if timers.iter().all(|t| t.0 != 1) || tries == 50 {
            return timers;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Asserts of the `(timer, ticks)` of each socket named in `sides` (from [`socket_timers`])
/// that it has a keepalive timer firing within `idle_secs` (and not long before: the
/// connection was just used) when `on`, and no timer at all otherwise.
pub fn assert_keepalive(sides: &[&str], timers: &[(u8, u64)], on: bool, idle_secs: u64) {
    for (side, t) in sides.iter().zip(timers) {
        if on {
            // Ticks of 1/100 s.
            let window = (idle_secs.saturating_sub(12) * 100)..=(idle_secs * 100);
            assert!(
                t.0 == 2 && window.contains(&t.1),
                "the {side} connection has no {idle_secs} s keepalive: {t:?}"
            );
        } else {
            assert_eq!(t.0, 0, "the {side} connection has a timer: {t:?}");
        }
    }
}

/// The uid and gid of the system user `name`, if there is one. getpwnam_r: the test servers
/// of both protocols start on concurrent threads, and getpwnam's shared static record let
/// one thread read the other's user (a PostgreSQL directory chowned to `mysql`).
pub(crate) fn user_ids(name: &str) -> Option<(u32, u32)> {
    let cname = std::ffi::CString::new(name).ok()?;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: passwd is plain old data; getpwnam_r fills it in.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call, the buffer's length is its own, and the
    // record's strings (unused here) point into `buf`, which outlives the read below.
    let rc = unsafe {
        libc::getpwnam_r(
            cname.as_ptr(),
            &mut pw,
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        )
    };
    (rc == 0 && !found.is_null()).then_some((pw.pw_uid, pw.pw_gid))
}
