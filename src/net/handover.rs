//! Passing listening sockets between processes: a Unix-domain SOCK_SEQPACKET socket (each
//! message arrives whole, with the descriptors sent beside it) and `SCM_RIGHTS`.
//!
//! The process-level protocol on top of it is in `app::handover`.

use socket2::{Domain, SockAddr, Socket, Type};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

/// Most descriptors one message carries (the kernel's limit is 253).
pub const MAX_FDS: usize = 200;
/// Largest message body.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// A listener bound beside `path` (same directory, a name of its own), not yet at `path`:
/// [`Beside::publish`] moves it there by an atomic rename, so that a client connecting
/// meanwhile finds either the old listener or this one, never no file.
pub struct Beside {
    socket: Option<Socket>,
    tmp: std::path::PathBuf,
}

/// Bind and listen beside `path` (see [`Beside`]).
pub fn listen_beside(path: &Path) -> io::Result<Beside> {
    let tmp = path.with_extension(format!("new-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let socket = Socket::new(Domain::UNIX, Type::SEQPACKET, None)?;
    socket.bind(&SockAddr::unix(&tmp)?)?;
    let beside = Beside {
        socket: Some(socket),
        tmp,
    };
    {
        use std::os::unix::fs::PermissionsExt;
        // Only this user may take the listeners over.
        std::fs::set_permissions(&beside.tmp, std::fs::Permissions::from_mode(0o600))?;
    }
    if let Some(s) = &beside.socket {
        s.listen(4)?;
    }
    Ok(beside)
}

impl Beside {
    /// Move the listener to `path`.
    pub fn publish(mut self, path: &Path) -> io::Result<Socket> {
        std::fs::rename(&self.tmp, path)?;
        self.tmp = std::path::PathBuf::new();
        Ok(self.socket.take().expect("published once"))
    }
}

impl Drop for Beside {
    fn drop(&mut self) {
        // Not published: remove the file.
        if !self.tmp.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Listen at `path` (bound beside it, then moved there).
pub fn listen(path: &Path) -> io::Result<Socket> {
    listen_beside(path)?.publish(path)
}

/// Connect to the process listening at `path`; `Ok(None)` when nobody does (no file, or a
/// file whose process is gone).
pub fn connect(path: &Path) -> io::Result<Option<Socket>> {
    let s = Socket::new(Domain::UNIX, Type::SEQPACKET, None)?;
    match s.connect(&SockAddr::unix(path)?) {
        Ok(()) => Ok(Some(s)),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Send one message with `fds` beside it (at most [`MAX_FDS`]).
pub fn send(s: &Socket, body: &[u8], fds: &[RawFd]) -> io::Result<()> {
    if fds.len() > MAX_FDS || body.len() > MAX_MESSAGE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "handover message too large",
        ));
    }
    let mut iov = libc::iovec {
        iov_base: body.as_ptr() as *mut libc::c_void,
        iov_len: body.len(),
    };
    let fd_bytes = std::mem::size_of_val(fds);
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(fd_bytes as u32) } as usize;
    let mut control = vec![0u8; if fds.is_empty() { 0 } else { space }];
    // SAFETY: zeroed msghdr is a valid "no name, no control" header; the pointers set below
    // point at live buffers for the duration of the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = space as _;
        // SAFETY: the control buffer is CMSG_SPACE(fd_bytes) long, room for one header and
        // the descriptors.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(fd_bytes as u32) as _;
            std::ptr::copy_nonoverlapping(
                fds.as_ptr() as *const u8,
                libc::CMSG_DATA(cmsg),
                fd_bytes,
            );
        }
    }
    loop {
        // SAFETY: msg describes valid buffers (above).
        let n = unsafe { libc::sendmsg(s.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Receive one message and the descriptors that came with it. `Ok(None)` when the peer
/// closed. A message cut short (larger than [`MAX_MESSAGE`], or more descriptors than fit)
/// is an error; its descriptors are closed.
pub fn recv(s: &Socket) -> io::Result<Option<(Vec<u8>, Vec<OwnedFd>)>> {
    let mut body = vec![0u8; MAX_MESSAGE];
    let mut iov = libc::iovec {
        iov_base: body.as_mut_ptr() as *mut libc::c_void,
        iov_len: body.len(),
    };
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE((MAX_FDS * std::mem::size_of::<RawFd>()) as u32) };
    let mut control = vec![0u8; space as usize];
    // SAFETY: as in `send`.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = space as _;
    let n = loop {
        // SAFETY: msg describes valid buffers; MSG_CMSG_CLOEXEC keeps received descriptors
        // out of any child process.
        let n = unsafe { libc::recvmsg(s.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    let mut fds = Vec::new();
    // SAFETY: the kernel filled `control` up to msg_controllen; the CMSG macros walk it.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg);
                let len = (*cmsg).cmsg_len as usize - (data as usize - cmsg as usize);
                for i in 0..len / std::mem::size_of::<RawFd>() {
                    let fd = std::ptr::read_unaligned((data as *const RawFd).add(i));
                    fds.push(OwnedFd::from_raw_fd(fd));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    if msg.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "handover message cut short",
        ));
    }
    if n == 0 && fds.is_empty() {
        return Ok(None);
    }
    body.truncate(n);
    Ok(Some((body, fds)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn descriptors_cross_a_seqpacket_pair() {
        let (a, b) = Socket::pair(Domain::UNIX, Type::SEQPACKET, None).unwrap();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        send(&a, b"one", &[l.as_raw_fd()]).unwrap();
        send(&a, b"two", &[]).unwrap();
        drop(l);
        let (body, mut fds) = recv(&b).unwrap().unwrap();
        assert_eq!(body, b"one");
        assert_eq!(fds.len(), 1);
        // The same listening socket: a connection to the address is accepted through it.
        let got = std::net::TcpListener::from(fds.pop().unwrap());
        assert_eq!(got.local_addr().unwrap(), addr);
        let _c = std::net::TcpStream::connect(addr).unwrap();
        got.accept().unwrap();
        let (body, fds) = recv(&b).unwrap().unwrap();
        assert_eq!((body.as_slice(), fds.len()), (&b"two"[..], 0));
        drop(a);
        assert!(recv(&b).unwrap().is_none());
    }

    #[test]
    fn connect_to_nothing_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert!(connect(&dir.path().join("none.sock")).unwrap().is_none());
        let path = dir.path().join("h.sock");
        let l = listen(&path).unwrap();
        assert!(connect(&path).unwrap().is_some());
        drop(l);
        assert!(connect(&path).unwrap().is_none());
    }
}
