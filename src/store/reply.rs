//! A one-shot from the store's thread to a monoio worker: the worker awaits the answer without
//! blocking its thread, on io_uring and on epoll alike.
//!
//! Why not a plain `Waker` in the slot: a monoio task's waker called from a thread that is not its
//! runtime's panics unless monoio's `sync` feature is on, and that feature changes every worker's
//! runtime (block_on's future becomes a task, each park also polls a cross-thread waker channel).
//! Instead the slot's waker is a socketpair, the trick the workers' inboxes already use
//! (`crate::sse::directory`): the store's thread puts the value in the slot, then writes one byte;
//! the worker's future waits for the socket to be readable, which its own driver reports (a poll
//! op on io_uring, epoll readiness on the legacy driver), and its own waker runs on its own
//! thread. Two file descriptors per read, and reads happen once per reconnection that missed
//! every local ring, never per event.
//!
//! Ordering: the value is stored before the byte is written, and the sending end is closed only
//! after that (or without a value when the store's thread drops the request). So once the
//! receiving end is readable, the slot holds the value, or the sender is gone for good.

use std::io::Write;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::error::ReadError;

struct Slot<T> {
    value: Mutex<Option<T>>,
    /// The receiver was dropped (its caller gave up): the store's thread may skip the work.
    abandoned: AtomicBool,
}

/// The sending half, owned by the store's thread.
pub(super) struct Replier<T> {
    slot: Arc<Slot<T>>,
    bell: StdUnixStream,
}

/// The receiving half, owned by the asking worker. Awaiting it is cancel-safe: the future owns no
/// IO buffer (a readiness wait), so a timeout may drop it at any point.
pub(crate) struct Reply<T> {
    slot: Arc<Slot<T>>,
    /// Registered with the worker's driver only when awaited, so a `Reply` can be made (and
    /// dropped) outside a runtime.
    bell: Option<StdUnixStream>,
}

/// A connected pair.
pub(super) fn channel<T>() -> std::io::Result<(Replier<T>, Reply<T>)> {
    let (tx, rx) = StdUnixStream::pair()?;
    tx.set_nonblocking(true)?;
    rx.set_nonblocking(true)?;
    let slot = Arc::new(Slot {
        value: Mutex::new(None),
        abandoned: AtomicBool::new(false),
    });
    Ok((
        Replier {
            slot: slot.clone(),
            bell: tx,
        },
        Reply {
            slot,
            bell: Some(rx),
        },
    ))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<T> Replier<T> {
    /// The asker is gone: nobody would read the answer.
    pub(super) fn abandoned(&self) -> bool {
        self.slot.abandoned.load(Ordering::Relaxed)
    }

    /// Delivers the answer and wakes the asker.
    pub(super) fn send(self, value: T) {
        *lock(&self.slot.value) = Some(value);
        // One byte on an empty socket never blocks; a receiver already gone makes this fail
        // (EPIPE, SIGPIPE ignored by the Rust runtime), which changes nothing.
        let _ = (&self.bell).write(&[1]);
    }
}

impl<T> Reply<T> {
    /// The answer. `Err(Stopped)` when the store's thread dropped the request unanswered (it
    /// stopped, or panicked). Must run inside a monoio runtime (either driver).
    pub(crate) async fn recv(mut self) -> Result<T, ReadError> {
        if let Some(v) = self.take() {
            return Ok(v);
        }
        let Some(bell) = self.bell.take() else {
            return Err(ReadError::Stopped);
        };
        let bell = monoio::net::UnixStream::from_std(bell).map_err(ReadError::Io)?;
        // Readable means a byte arrived (the value is in the slot) or the sender closed (EOF);
        // see the ordering note at the top. Cancel-safe: `readable` owns no buffer.
        bell.readable(false).await.map_err(ReadError::Io)?;
        self.take().ok_or(ReadError::Stopped)
    }

    /// `recv`, given up after `limit` (the read goes on on the store's thread; its answer is then
    /// dropped). Needs the runtime's timer (every worker's runtime has it).
    pub(crate) async fn recv_within(self, limit: Duration) -> Result<T, ReadError> {
        match monoio::time::timeout(limit, self.recv()).await {
            Ok(answer) => answer,
            Err(_elapsed) => Err(ReadError::TimedOut { after: limit }),
        }
    }

    fn take(&self) -> Option<T> {
        lock(&self.slot.value).take()
    }
}

impl<T> Drop for Reply<T> {
    fn drop(&mut self) {
        self.slot.abandoned.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::on_both_drivers as both_drivers;

    #[test]
    fn a_value_sent_from_another_thread_wakes_the_worker() {
        both_drivers(|| async {
            let (tx, rx) = channel::<u32>().unwrap();
            let sender = std::thread::spawn(move || {
                // Late enough that the worker is parked in its driver when the byte comes.
                std::thread::sleep(Duration::from_millis(50));
                tx.send(7);
            });
            let started = std::time::Instant::now();
            assert_eq!(rx.recv().await.unwrap(), 7);
            assert!(started.elapsed() >= Duration::from_millis(40));
            sender.join().unwrap();
        });
    }

    #[test]
    fn a_value_sent_before_awaiting_is_there_at_once() {
        both_drivers(|| async {
            let (tx, rx) = channel::<&str>().unwrap();
            tx.send("early");
            assert_eq!(rx.recv().await.unwrap(), "early");
        });
    }

    #[test]
    fn a_dropped_sender_ends_the_wait_with_stopped() {
        both_drivers(|| async {
            let (tx, rx) = channel::<u32>().unwrap();
            let dropper = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                drop(tx);
            });
            assert!(matches!(rx.recv().await, Err(ReadError::Stopped)));
            dropper.join().unwrap();
        });
    }

    #[test]
    fn a_timeout_gives_up_and_marks_the_request_abandoned() {
        both_drivers(|| async {
            let (tx, rx) = channel::<u32>().unwrap();
            let got = rx.recv_within(Duration::from_millis(30)).await;
            assert!(matches!(got, Err(ReadError::TimedOut { .. })), "{got:?}");
            assert!(tx.abandoned());
            tx.send(1); // a late answer goes nowhere and harms nothing
        });
    }
}
