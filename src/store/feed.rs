//! A many-shot channel from a store thread to a monoio worker: items queued on one side, awaited
//! on the other without blocking the worker, on io_uring and on epoll alike.
//!
//! The same bell as `super::reply` (a socketpair whose readability the worker's own driver
//! reports; a monoio waker must not be called from a foreign thread), but for a stream of items:
//! the sender queues an item and writes one byte only when the receiver may be asleep (`rung`
//! clear), so a busy feed costs a lock per batch, not a syscall per item.
//!
//! Ordering: the receiver clears `rung` and then looks at the queue once more before it waits;
//! the sender queues and then sets `rung`. Whichever comes second sees the other: an item is
//! never left in the queue with the receiver asleep and no byte on its way. A bell byte lost to a
//! cancelled read loses nothing: the queue is always looked at before waiting.

use std::collections::VecDeque;
use std::io::Write;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::error::ReadError;

struct Shared<T> {
    items: Mutex<VecDeque<T>>,
    /// A byte is on its way (or the receiver is awake): the next item needs no syscall.
    rung: AtomicBool,
    /// The receiver was dropped: the sender may stop producing.
    abandoned: AtomicBool,
}

/// The sending half (a store thread).
pub(super) struct FeedSender<T> {
    shared: Arc<Shared<T>>,
    bell: StdUnixStream,
}

/// The receiving half (a worker task). `next` is cancel-safe.
pub(crate) struct Feed<T> {
    shared: Arc<Shared<T>>,
    /// Registered with the worker's driver on the first wait (a `Feed` can be made and dropped
    /// outside a runtime).
    bell: Option<StdUnixStream>,
    registered: Option<monoio::net::UnixStream>,
    /// The sender is gone and its last byte was read: nothing more will come.
    closed: bool,
}

/// A connected pair.
pub(super) fn channel<T>() -> std::io::Result<(FeedSender<T>, Feed<T>)> {
    let (tx, rx) = StdUnixStream::pair()?;
    tx.set_nonblocking(true)?;
    rx.set_nonblocking(true)?;
    let shared = Arc::new(Shared {
        items: Mutex::new(VecDeque::new()),
        rung: AtomicBool::new(false),
        abandoned: AtomicBool::new(false),
    });
    Ok((
        FeedSender {
            shared: shared.clone(),
            bell: tx,
        },
        Feed {
            shared,
            bell: Some(rx),
            registered: None,
            closed: false,
        },
    ))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<T> FeedSender<T> {
    pub(super) fn abandoned(&self) -> bool {
        self.shared.abandoned.load(Ordering::Relaxed)
    }

    /// Items queued and not yet taken.
    pub(super) fn queued(&self) -> usize {
        lock(&self.shared.items).len()
    }

    /// Queues `item` and wakes the receiver if it may sleep.
    pub(super) fn push(&self, item: T) {
        lock(&self.shared.items).push_back(item);
        if !self.shared.rung.swap(true, Ordering::SeqCst) {
            // A full socket means bytes are waiting already; a receiver gone makes this fail
            // (EPIPE, SIGPIPE ignored by the Rust runtime): both change nothing.
            let _ = (&self.bell).write(&[1]);
        }
    }
}

impl<T> Feed<T> {
    /// The next item; None once the sender is gone and everything it queued was taken. Must run
    /// inside a monoio runtime (either driver).
    pub(crate) async fn next(&mut self) -> Result<Option<T>, ReadError> {
        loop {
            if let Some(item) = self.pop() {
                return Ok(Some(item));
            }
            if self.closed {
                return Ok(None);
            }
            self.shared.rung.store(false, Ordering::SeqCst);
            if let Some(item) = self.pop() {
                return Ok(Some(item));
            }
            if self.registered.is_none() {
                if let Some(bell) = self.bell.take() {
                    self.registered =
                        Some(monoio::net::UnixStream::from_std(bell).map_err(ReadError::Io)?);
                }
            }
            let Some(bell) = &self.registered else {
                return Ok(None);
            };
            // Cancel-safe: a readiness wait owns no buffer.
            bell.readable(false).await.map_err(ReadError::Io)?;
            self.closed = drain(bell);
        }
    }

    fn pop(&self) -> Option<T> {
        lock(&self.shared.items).pop_front()
    }
}

/// Reads the bell's bytes out so that the next wait sleeps; true when the sender closed.
fn drain(bell: &monoio::net::UnixStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut buf = [0u8; 64];
    loop {
        // SAFETY: reading at most buf.len() bytes into buf from a socket this Feed owns.
        let n = unsafe { libc::read(bell.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        match n {
            0 => return true,
            n if n > 0 => continue,
            _ => return false, // EAGAIN: drained (or an error, seen again on the next wait)
        }
    }
}

impl<T> Drop for Feed<T> {
    fn drop(&mut self) {
        self.shared.abandoned.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::on_both_drivers as both_drivers;
    use std::time::Duration;

    #[test]
    fn items_from_another_thread_arrive_in_order_and_the_end_is_seen() {
        both_drivers(|| async {
            let (tx, mut rx) = channel::<u32>().unwrap();
            let sender = std::thread::spawn(move || {
                for i in 0..1000 {
                    tx.push(i);
                    if i % 100 == 0 {
                        // Late enough that the worker is parked in its driver now and then.
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            });
            let mut got = Vec::new();
            while let Some(i) = rx.next().await.unwrap() {
                got.push(i);
            }
            assert_eq!(got, (0..1000).collect::<Vec<_>>());
            sender.join().unwrap();
        });
    }

    #[test]
    fn a_dropped_receiver_is_seen_by_the_sender() {
        let (tx, rx) = channel::<u32>().unwrap();
        assert!(!tx.abandoned());
        drop(rx);
        assert!(tx.abandoned());
        tx.push(1); // goes nowhere, harms nothing
    }

    #[test]
    fn a_cancelled_wait_loses_no_item() {
        both_drivers(|| async {
            let (tx, mut rx) = channel::<u32>().unwrap();
            let waited = monoio::time::timeout(Duration::from_millis(20), rx.next()).await;
            assert!(waited.is_err(), "nothing was sent yet");
            tx.push(7);
            assert_eq!(rx.next().await.unwrap(), Some(7));
        });
    }
}
