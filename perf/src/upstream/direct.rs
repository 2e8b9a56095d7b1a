//! A new connection's first steps without a trip through the driver: a non-blocking `recv` of
//! its request and `send`s of its SSE head and first event.
//!
//! Why: flat out, every busy stream writes once per driver round (one write each, then a
//! yield), so a round lasts as long as 1000 writes take; a step that waits for the driver
//! (`readable()`, a read, a write: one completion each) waits a round. A new connection needed
//! five of them (accept, readable, read, head, first event): under scenario 6's 1000 flat-out
//! streams its first event came ~30 ms after its connect (p99 ~48 ms), while the proxies
//! measured against it answered in under 1 ms of their own (perf/NOTES.md, "The origin's own
//! turns"). Its request is normally there already when the accept completes (the accept
//! itself waited for the round), and its first writes fit in the socket's send buffer, so the
//! steps after the accept are done at once. This is the origin's fairness, as tether's
//! `Turns` is the proxy's: a new stream is not queued behind a round of busy ones. What a
//! stream sends is the same; only where its first bytes are written from changes.
//!
//! Both work on either driver: `MSG_DONTWAIT` makes one call non-blocking whatever the
//! socket's mode, and neither driver caches data, only readiness (a stale "readable" costs
//! one read that finds nothing and waits again).

use std::io;
use std::os::fd::RawFd;

/// Appends to `buf` (up to its spare capacity) what the socket holds now, without waiting.
/// Returns the bytes appended; 0 when there were none yet, at EOF or on an error (the
/// driver's next read sees the EOF or the error again and reports it).
pub(crate) fn recv_now(fd: RawFd, buf: &mut Vec<u8>) -> usize {
    let len = buf.len();
    let room = buf.capacity() - len;
    if room == 0 {
        return 0;
    }
    // SAFETY: the pointer and length describe `buf`'s spare capacity, which recv may write;
    // `fd` is an open socket owned by the caller.
    let n = unsafe {
        libc::recv(
            fd,
            buf.as_mut_ptr().add(len) as *mut libc::c_void,
            room,
            libc::MSG_DONTWAIT,
        )
    };
    if n <= 0 {
        return 0;
    }
    // SAFETY: recv initialised `n` (at most `room`) bytes after `len`.
    unsafe { buf.set_len(len + n as usize) };
    n as usize
}

/// Sends `bytes` without blocking and without SIGPIPE (a peer that left gives EPIPE); the bytes
/// the socket took. Also sse-load's send (`load::net`).
pub(crate) fn send(fd: RawFd, bytes: &[u8]) -> io::Result<usize> {
    // SAFETY: `bytes` is a valid slice for reading; `fd` is an open socket owned by the caller.
    let n = unsafe {
        libc::send(
            fd,
            bytes.as_ptr() as *const libc::c_void,
            bytes.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Sends as much of `bytes` as the socket takes now, without waiting. Returns how many it
/// took: 0 when its buffer is full or on an error (the driver's write of the rest reports it).
pub(crate) fn send_now(fd: RawFd, bytes: &[u8]) -> usize {
    if bytes.is_empty() {
        return 0;
    }
    send(fd, bytes).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;

    #[test]
    fn recv_now_takes_what_is_there_and_never_waits() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let mut buf = Vec::with_capacity(64);
        assert_eq!(
            recv_now(server.as_raw_fd(), &mut buf),
            0,
            "nothing sent yet"
        );
        client.write_all(b"GET / HTTP/1.1\r\n").unwrap();
        // Blocking read of nothing would hang: wait for the bytes with a peek first.
        let mut peek = [0u8; 1];
        server.peek(&mut peek).unwrap();
        buf.extend_from_slice(b"x");
        assert_eq!(recv_now(server.as_raw_fd(), &mut buf), 16);
        assert_eq!(buf, b"xGET / HTTP/1.1\r\n");
        let mut full = Vec::new();
        assert_eq!(recv_now(server.as_raw_fd(), &mut full), 0, "no room");
    }

    #[test]
    fn send_now_sends_and_reports_a_full_buffer_as_zero() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        assert_eq!(send_now(server.as_raw_fd(), b"hello"), 5);
        let mut got = [0u8; 5];
        client.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello");
        // Nobody reads: the send buffers fill and send_now returns 0 instead of waiting.
        let chunk = vec![7u8; 1 << 16];
        let mut total = 0usize;
        loop {
            let n = send_now(server.as_raw_fd(), &chunk);
            if n == 0 {
                break;
            }
            total += n;
        }
        assert!(total > 0);
    }
}
