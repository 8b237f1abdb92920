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
