//! I/O buffers held only while they hold bytes.
//!
//! A client between transactions has nothing in flight, yet a session that kept its four
//! buffers (client in and out, server in and out) held some 60 KiB for it: 10,000 idle
//! clients, 600 MiB. Sessions instead give a buffer back when it is empty and they are about
//! to wait, and take one when bytes come: the read into it is tried first with a buffer
//! taken for the attempt, which goes back at once if nothing was there. Buffers live on a
//! free list per thread (a worker's sessions all run on its thread), bounded; one that grew
//! past [`KEEP_MAX`] (a large row, a COPY) is freed instead of kept.

use bytes::BytesMut;
use std::cell::RefCell;
use tokio::io::AsyncRead;

/// The capacity a buffer is taken with.
pub const SIZE: usize = 16 * 1024;
/// Larger buffers are freed, not kept.
const KEEP_MAX: usize = 64 * 1024;
/// At most this many buffers kept per thread (4 MiB of `SIZE` ones): enough for the sessions
/// a worker serves at once; beyond it, a buffer given back is freed.
const KEEP_COUNT: usize = 256;

thread_local! {
    static FREE: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// Make room for `additional` more bytes in `buf`: from the free list when `buf` has no
/// storage (given back earlier), else as `BytesMut::reserve` does.
#[inline]
pub fn reserve(buf: &mut BytesMut, additional: usize) {
    if buf.capacity() == 0 {
        *buf = take();
    }
    buf.reserve(additional);
}

/// An empty buffer of at least [`SIZE`] bytes.
fn take() -> BytesMut {
    FREE.with(|f| f.borrow_mut().pop())
        .unwrap_or_else(|| BytesMut::with_capacity(SIZE))
}

/// Give `buf`'s storage back if it holds no bytes (it is left with none); a buffer with
/// bytes is left as it is.
#[inline]
pub fn give(buf: &mut BytesMut) {
    give_all([buf]);
}

/// [`give`] for each of `bufs`, in one visit to the free list.
#[inline]
pub fn give_all<const N: usize>(mut bufs: [&mut BytesMut; N]) {
    if bufs.iter_mut().all(|b| !b.is_empty() || !holds_storage(b)) {
        return;
    }
    FREE.with(|f| {
        let mut f = f.borrow_mut();
        for b in bufs {
            if b.is_empty() && holds_storage(b) {
                keep(&mut f, std::mem::take(b));
            }
        }
    });
}

/// Whether `buf` has storage. A buffer whose bytes were all consumed has its start at the
/// end of its storage and so reports no capacity, though it holds all of it (a buffer
/// allocated to fit what was put in it, such as the login's answer, then written out): an
/// empty one is moved back to the start of its storage first (nothing to copy).
#[inline]
fn holds_storage(buf: &mut BytesMut) -> bool {
    buf.capacity() != 0 || (buf.is_empty() && buf.try_reclaim(1))
}

/// Each of `bufs` that has no storage gets an empty buffer, in one visit to the free list.
#[inline]
pub fn take_all<const N: usize>(bufs: [&mut BytesMut; N]) {
    if bufs.iter().all(|b| b.capacity() != 0) {
        return;
    }
    FREE.with(|f| {
        let mut f = f.borrow_mut();
        for b in bufs {
            if b.capacity() == 0 {
                *b = f.pop().unwrap_or_else(|| BytesMut::with_capacity(SIZE));
            }
        }
    });
}

/// Read from `s` into `buf` with room for `additional` more bytes, as `read_buf` does, but
/// holding storage only while there are bytes: taken for each attempt, given back when the
/// read has to wait and `buf` is empty.
pub async fn read<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut BytesMut,
    additional: usize,
) -> std::io::Result<usize> {
    std::future::poll_fn(|cx| {
        reserve(buf, additional);
        let r = tokio_util::io::poll_read_buf(std::pin::Pin::new(&mut *s), cx, buf);
        if r.is_pending() {
            give(buf);
        }
        r
    })
    .await
}

/// Put the empty `buf` on the free list `f`, unless it is small (under [`SIZE`]) or large, or
/// the list is full: then it is freed.
fn keep(f: &mut Vec<BytesMut>, mut buf: BytesMut) {
    // Back to its whole capacity (an advanced buffer keeps its offset until a reserve), so
    // that its size is known and a taker gets all of it; false, without allocating, if its
    // storage is smaller. No copy: it is empty.
    if buf.try_reclaim(SIZE) && buf.capacity() <= KEEP_MAX && f.len() < KEEP_COUNT {
        f.push(buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Buf;

    #[test]
    fn a_buffer_given_back_is_taken_again_whole_and_large_ones_are_freed() {
        let mut b = take();
        assert!(b.capacity() >= SIZE);
        b.extend_from_slice(&[7u8; 1000]);
        give(&mut b);
        assert_eq!(b.len(), 1000, "a buffer with bytes is kept by its owner");
        b.advance(1000);
        let ptr = b.as_ptr() as usize - 1000;
        give(&mut b);
        assert_eq!(b.capacity(), 0, "given back: no storage left");
        let again = take();
        assert_eq!(
            again.as_ptr() as usize,
            ptr,
            "the same storage, from its start"
        );
        assert!(again.capacity() >= SIZE);
        let mut big = BytesMut::with_capacity(KEEP_MAX * 2);
        give(&mut big);
        assert_eq!(big.capacity(), 0);
        let next = take();
        assert!(next.capacity() <= KEEP_MAX, "large buffers are not kept");
        let mut empty = BytesMut::new();
        reserve(&mut empty, 10);
        assert!(empty.capacity() >= SIZE);
    }

    #[test]
    fn a_buffer_read_to_the_end_of_its_storage_is_given_back_too() {
        let listed = || FREE.with(|f| f.borrow().len());
        // Filled to its last byte, then all of it consumed: it reports no capacity.
        let mut b = BytesMut::with_capacity(SIZE);
        b.extend_from_slice(&vec![1u8; b.capacity()]);
        let ptr = b.as_ptr() as usize;
        b.advance(b.len());
        assert_eq!(b.capacity(), 0);
        let before = listed();
        give(&mut b);
        assert_eq!(listed(), before + 1, "its storage is on the free list");
        let again = take();
        assert_eq!(
            again.as_ptr() as usize,
            ptr,
            "the same storage, from its start"
        );
        assert!(again.capacity() >= SIZE);
        // One allocated to fit a small answer (the login's) is freed, not grown for the list.
        let mut small = BytesMut::new();
        small.extend_from_slice(&[2u8; 418]);
        small.advance(418);
        let before = listed();
        give(&mut small);
        assert_eq!(listed(), before, "not listed");
        assert!(
            small.is_empty() && small.capacity() == 0,
            "and no longer held by its owner"
        );
        let mut none = BytesMut::new();
        give(&mut none);
        assert_eq!(listed(), before, "a buffer without storage gives nothing");
    }
}
