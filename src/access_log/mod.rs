//! The access log (`--access-log stdout|FILE`, off by default): one JSON line per request, and
//! per SSE stream or tunnel when it ends (`line.rs` says what a line holds).
//!
//! Each worker has its own [`AccessLog`]: lines are formatted into the worker's buffer (no lock,
//! no syscall on the request path), and the buffer is written out by the worker itself, with
//! `write(2)` calls of whole lines only, when it passes [`ACCESS_LOG_BUFFER_BYTES`] or every
//! [`ACCESS_LOG_FLUSH_INTERVAL`]. A file is opened by every worker with O_APPEND, so workers
//! append to the same file and a line is never cut by another worker's (each `write` of whole
//! lines lands at the end of the file as one piece). Standard output is written in pieces of at
//! most PIPE_BUF bytes, the size a pipe writes atomically.
//!
//! ## Reopening (log rotation): for the SIGHUP path
//! `reopen_access_logs()` is the one call the signal path makes (it is async-signal-safe: one
//! atomic add). It bumps [`ACCESS_LOG_GENERATION`]; each worker compares it with the generation
//! of its open file at its next flush (at most `ACCESS_LOG_FLUSH_INTERVAL` later, with or
//! without traffic) and opens the path again. Lines buffered before the flush go to the new file.
//! No request ever reads the counter.

mod line;

use std::cell::{Cell, RefCell};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub(crate) use line::{AccessLine, LineKind, RequestStart};

use crate::worker::WorkerCtx;

/// Bytes of lines a worker buffers before it writes them out at once (besides the timer).
pub(crate) const ACCESS_LOG_BUFFER_BYTES: usize = 64 * 1024;

/// Longest a line waits in its worker's buffer before it is written, and longest a reopen
/// request waits before each worker opens the path again.
pub(crate) const ACCESS_LOG_FLUSH_INTERVAL: Duration = Duration::from_millis(200);

/// Most bytes written to standard output by one `write`: PIPE_BUF, what a pipe (the usual
/// standard output of a service) writes without interleaving it with another writer's bytes.
const STDOUT_WRITE_BYTES: usize = libc::PIPE_BUF;

/// Most bytes written to a file by one `write` (whole lines; a longer line is written alone).
const FILE_WRITE_BYTES: usize = ACCESS_LOG_BUFFER_BYTES;

/// Bumped by [`reopen_access_logs`]; each worker reopens its file when it differs from the
/// generation it opened. Read only when a worker flushes, never per request.
pub static ACCESS_LOG_GENERATION: AtomicU64 = AtomicU64::new(0);

/// Asks every worker to reopen the access log file at its next flush (log rotation: call from
/// the SIGHUP path after the file was moved). Async-signal-safe.
pub fn reopen_access_logs() {
    ACCESS_LOG_GENERATION.fetch_add(1, Ordering::Relaxed);
}

/// Where access log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogTarget {
    Stdout,
    File(PathBuf),
}

impl AccessLogTarget {
    /// `stdout`, or a file path.
    pub fn parse(text: &str) -> AccessLogTarget {
        if text == "stdout" || text == "-" {
            AccessLogTarget::Stdout
        } else {
            AccessLogTarget::File(PathBuf::from(text))
        }
    }

    /// Opens the file for appending (creating it), as each worker will: start-up fails on a path
    /// that cannot be written rather than every line being lost.
    pub fn check(&self) -> Result<(), AccessLogError> {
        match self {
            AccessLogTarget::Stdout => Ok(()),
            AccessLogTarget::File(path) => {
                open_append(path)
                    .map(drop)
                    .map_err(|error| AccessLogError::Open {
                        path: path.clone(),
                        error,
                    })
            }
        }
    }
}

/// Why the access log cannot be written.
#[derive(Debug)]
pub enum AccessLogError {
    Open { path: PathBuf, error: io::Error },
}

impl fmt::Display for AccessLogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccessLogError::Open { path, error } => write!(
                f,
                "--access-log {}: cannot open for appending: {error} (give a file in an existing, writable directory, or \"stdout\")",
                path.display()
            ),
        }
    }
}

impl std::error::Error for AccessLogError {}

fn open_append(path: &std::path::Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o644)
        .open(path)
}

/// One worker's access log: its buffer and its own handle on the file.
#[derive(Debug)]
pub(crate) struct AccessLog {
    target: AccessLogTarget,
    /// The open file (None for standard output).
    file: RefCell<Option<File>>,
    /// The generation `file` was opened at.
    generation: Cell<u64>,
    /// Whole lines not yet written.
    buf: RefCell<Vec<u8>>,
    /// A reopen failed and was logged; logged again only once it works.
    reopen_failing: Cell<bool>,
}

impl AccessLog {
    pub(crate) fn open(target: &AccessLogTarget) -> io::Result<AccessLog> {
        let generation = ACCESS_LOG_GENERATION.load(Ordering::Relaxed);
        let file = match target {
            AccessLogTarget::Stdout => None,
            AccessLogTarget::File(path) => Some(open_append(path)?),
        };
        Ok(AccessLog {
            target: target.clone(),
            file: RefCell::new(file),
            generation: Cell::new(generation),
            buf: RefCell::new(Vec::with_capacity(ACCESS_LOG_BUFFER_BYTES)),
            reopen_failing: Cell::new(false),
        })
    }

    /// Adds one line; writes the buffer out when it is full.
    pub(crate) fn record(&self, line: &AccessLine<'_>) {
        let full = {
            let mut buf = self.buf.borrow_mut();
            line.write_json(&crate::log::utc_timestamp(), Instant::now(), &mut buf);
            buf.len() >= ACCESS_LOG_BUFFER_BYTES
        };
        if full {
            self.flush();
        }
    }

    /// Reopens the file if a reopen was asked for, then writes every buffered line.
    pub(crate) fn flush(&self) {
        self.reopen_if_asked();
        let mut buf = self.buf.borrow_mut();
        if buf.is_empty() {
            return;
        }
        let file = self.file.borrow();
        let (fd, most) = match file.as_ref() {
            Some(f) => (f.as_raw_fd(), FILE_WRITE_BYTES),
            None => (libc::STDOUT_FILENO, STDOUT_WRITE_BYTES),
        };
        let mut rest: &[u8] = &buf;
        while !rest.is_empty() {
            let piece = whole_lines(rest, most);
            match write_all(fd, piece) {
                Ok(()) => rest = &rest[piece.len()..],
                Err(e) => {
                    crate::log_warn!(
                        "access log: {} lines lost: {e}",
                        rest.iter().filter(|&&b| b == b'\n').count()
                    );
                    break;
                }
            }
        }
        buf.clear();
        if buf.capacity() > 2 * ACCESS_LOG_BUFFER_BYTES {
            buf.shrink_to(ACCESS_LOG_BUFFER_BYTES);
        }
    }

    fn reopen_if_asked(&self) {
        let wanted = ACCESS_LOG_GENERATION.load(Ordering::Relaxed);
        if wanted == self.generation.get() {
            return;
        }
        let AccessLogTarget::File(path) = &self.target else {
            self.generation.set(wanted);
            return;
        };
        match open_append(path) {
            Ok(f) => {
                *self.file.borrow_mut() = Some(f);
                self.generation.set(wanted);
                self.reopen_failing.set(false);
            }
            Err(e) => {
                // The old file stays in use; tried again at every flush.
                if !self.reopen_failing.replace(true) {
                    crate::log_warn!(
                        "access log: cannot reopen {}: {e}; still writing to the old file",
                        path.display()
                    );
                }
            }
        }
    }
}

/// The longest prefix of `buf` that is whole lines and at most `most` bytes, or the first line
/// alone when it is longer than that.
fn whole_lines(buf: &[u8], most: usize) -> &[u8] {
    if buf.len() <= most {
        return buf;
    }
    match memchr::memrchr(b'\n', &buf[..most]) {
        Some(end) => &buf[..=end],
        None => match memchr::memchr(b'\n', buf) {
            Some(end) => &buf[..=end],
            None => buf,
        },
    }
}

/// `write(2)` until all of `bytes` is written (a regular file or a blocking pipe takes it in
/// one call; the loop covers signals and short writes).
fn write_all(fd: i32, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        // SAFETY: writes at most `bytes.len()` bytes from a valid slice.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => {
                    // A non-blocking standard output that is full: wait for it (rare; the
                    // lines are not dropped).
                    let mut pfd = libc::pollfd {
                        fd,
                        events: libc::POLLOUT,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd.
                    unsafe { libc::poll(&mut pfd, 1, 1000) };
                    continue;
                }
                _ => return Err(e),
            }
        }
        bytes = &bytes[n as usize..];
    }
    Ok(())
}

/// Writes a worker's buffered lines every ACCESS_LOG_FLUSH_INTERVAL (and reopens the file when
/// asked). Runs for the worker's life; the worker flushes once more when it stops.
pub(crate) async fn flush_loop(ctx: Rc<WorkerCtx>) {
    loop {
        monoio::time::sleep(ACCESS_LOG_FLUSH_INTERVAL).await;
        if let Some(log) = &ctx.access_log {
            log.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_are_whole_lines() {
        let buf = b"aaaa\nbb\ncccccc\n";
        assert_eq!(whole_lines(buf, 100), &buf[..]);
        assert_eq!(whole_lines(buf, 8), b"aaaa\nbb\n");
        assert_eq!(whole_lines(buf, 6), b"aaaa\n");
        assert_eq!(whole_lines(buf, 3), b"aaaa\n", "a long line goes alone");
    }

    #[test]
    fn a_path_in_a_missing_directory_is_refused_with_the_flag_named() {
        let target = AccessLogTarget::parse("/nonexistent-dir-tether/access.log");
        let err = target.check().unwrap_err().to_string();
        assert!(
            err.starts_with("--access-log /nonexistent-dir-tether/access.log: cannot open"),
            "{err}"
        );
        assert_eq!(AccessLogTarget::parse("stdout"), AccessLogTarget::Stdout);
    }
}
