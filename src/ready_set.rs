//! A worker's epoll set for the upstream sockets its SSE streams read by themselves: readiness of
//! many sockets through one wait, as nginx gets it, instead of one poll operation per read.
//!
//! A relayed stream reads its upstream with its own `recv` in the wake-up that found it readable
//! (crate::sse::pump). Waiting for that through monoio (`readable()`) arms a one-shot io_uring
//! poll per read: the kernel sets the poll up (a `tcp_poll` and a wait-queue entry), completes
//! it through task work on the worker's thread (a second `tcp_poll`), posts a completion that
//! monoio reaps and dispatches, and the stream arms a new one for its next event. At a fixed
//! rate that leaves the worker idle between events every event pays all of that
//! (perf/NOTES.md, "Per-event cost at a fixed rate").
//!
//! Here each upstream socket is added once, edge-triggered, to an epoll set of the worker's
//! (`epoll_ctl` at the start of the body, and at its end). The kernel's callback only queues a
//! socket on the set's ready list when data arrives; the set's one fd is watched through monoio
//! (one poll operation per wake-up of the worker, whatever the number of sockets ready), and its
//! driver task takes the ready list with a non-blocking `epoll_wait` and wakes the streams.
//!
//! ```text
//! data on an upstream socket -> kernel queues it on the set's ready list (no wake of its own)
//! set's fd readable (monoio) -> driver: epoll_wait(0) -> slot.ready = true, stream woken
//! stream: wait() sees ready (cleared) -> recv -> short read: drained (the next data is a
//!         new edge) / full read: set_ready() (more may be there, no edge will say so)
//! ```
//! Works the same on both drivers: on epoll the set's fd sits in monoio's own epoll set, and
//! replaces the `poll(2)` that monoio's `readable(false)` makes before and after every wait.
//! The waits own no buffer: dropping one (in a `select!`) loses nothing.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use monoio::net::UnixStream;

/// Ready sockets taken per `epoll_wait`; more are taken by calling again at once.
const EVENTS_PER_WAIT: usize = 256;

/// A worker's readiness set (one per worker, in its `WorkerCtx`).
pub(crate) struct ReadySet {
    epfd: OwnedFd,
    slots: RefCell<Slots>,
}

#[derive(Default)]
struct Slots {
    entries: Vec<Slot>,
    /// Indexes of entries no `Interest` holds.
    free: Vec<u32>,
}

#[derive(Default)]
struct Slot {
    /// Told apart from an earlier holder of the same index: an event of a socket that was
    /// removed meanwhile (taken in the same `epoll_wait`) must not wake the next holder.
    generation: u32,
    /// An edge came (or the last read may have left data) and no wait has taken it yet.
    ready: bool,
    /// The peer's end (or an error) was reported: every wait passes from then on. Its edge
    /// may come with the last data, in one event: a read that takes the data is short, yet
    /// the end is still to be read (nginx's `pending_eof`), and no later edge would tell.
    ended: bool,
    waker: Option<Waker>,
}

/// The token an entry's events carry: its index and generation.
fn token(index: u32, generation: u32) -> u64 {
    (u64::from(generation) << 32) | u64::from(index)
}

impl ReadySet {
    /// A worker's set, and a second fd of it for the driver (`drive`), which monoio watches.
    pub(crate) fn new() -> io::Result<(Rc<ReadySet>, OwnedFd)> {
        // SAFETY: epoll_create1 returns a new fd that we own, or -1.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh fd, owned here only.
        let epfd = unsafe { OwnedFd::from_raw_fd(fd) };
        let watch = epfd.try_clone()?;
        let set = Rc::new(ReadySet {
            epfd,
            slots: RefCell::new(Slots::default()),
        });
        Ok((set, watch))
    }

    /// Adds `fd` (a socket that outlives the returned `Interest`) to the set. Data already in
    /// the socket counts as an edge: the first `wait` passes at once then.
    pub(crate) fn register(&self, fd: RawFd) -> io::Result<Interest<'_>> {
        let (index, generation) = {
            let mut slots = self.slots.borrow_mut();
            let index = match slots.free.pop() {
                Some(i) => i,
                None => {
                    let i = u32::try_from(slots.entries.len())
                        .map_err(|_| io::Error::other("readiness set full"))?;
                    slots.entries.push(Slot::default());
                    i
                }
            };
            let slot = &mut slots.entries[index as usize];
            slot.ready = false;
            slot.ended = false;
            slot.waker = None;
            (index, slot.generation)
        };
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
            u64: token(index, generation),
        };
        // SAFETY: both fds are valid; `ev` lives across the call.
        let rc =
            unsafe { libc::epoll_ctl(self.epfd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            self.release(index);
            return Err(e);
        }
        Ok(Interest {
            set: self,
            index,
            fd,
        })
    }

    fn release(&self, index: u32) {
        let mut slots = self.slots.borrow_mut();
        let slot = &mut slots.entries[index as usize];
        slot.generation = slot.generation.wrapping_add(1);
        slot.ready = false;
        slot.ended = false;
        slot.waker = None;
        slots.free.push(index);
    }

    /// Wakes the entries whose sockets the kernel reported ready.
    ///
    /// Wakes inside the borrow of the slots, with no list of wakers gathered first (an
    /// allocation per wake-up of the worker): a waker of this thread's runtime only queues its
    /// task, it runs nothing here, so nothing can come back to the slots while they are
    /// borrowed.
    fn dispatch(&self, events: &[libc::epoll_event]) {
        let mut slots = self.slots.borrow_mut();
        for ev in events {
            let token = ev.u64;
            let (index, generation) = (token as u32, (token >> 32) as u32);
            let Some(slot) = slots.entries.get_mut(index as usize) else {
                continue;
            };
            if slot.generation != generation {
                continue;
            }
            slot.ready = true;
            if ev.events & (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0 {
                slot.ended = true;
            }
            if let Some(w) = slot.waker.take() {
                w.wake();
            }
        }
    }

    /// The driver: waits (through monoio) for the set to have ready sockets, takes them all and
    /// wakes their streams; runs for the worker's life (spawn it once per worker, with the fd
    /// `new` returned).
    pub(crate) async fn drive(self: Rc<Self>, watch: OwnedFd) {
        // The set's fd as something monoio can wait on: any pollable fd does for `readable`,
        // on io_uring (a poll operation) and on epoll (monoio's set holds it, and its
        // `poll(2)` check works on an epoll fd).
        // SAFETY: `watch` is an fd we own; the UnixStream takes it over (and closes it).
        let watch = match UnixStream::from_std(unsafe {
            std::os::unix::net::UnixStream::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(watch))
        }) {
            Ok(w) => w,
            Err(e) => {
                crate::log_error!("readiness set: cannot watch its fd: {e}");
                return;
            }
        };
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS_PER_WAIT];
        loop {
            if let Err(e) = watch.readable(false).await {
                crate::log_error!("readiness set: wait failed: {e}");
                return;
            }
            loop {
                // SAFETY: `events` has room for EVENTS_PER_WAIT entries; timeout 0 never blocks.
                let n = unsafe {
                    libc::epoll_wait(
                        self.epfd.as_raw_fd(),
                        events.as_mut_ptr(),
                        EVENTS_PER_WAIT as i32,
                        0,
                    )
                };
                if n < 0 {
                    let e = io::Error::last_os_error();
                    if e.kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    crate::log_error!("readiness set: epoll_wait failed: {e}");
                    break;
                }
                let n = n as usize;
                self.dispatch(&events[..n]);
                if n < EVENTS_PER_WAIT {
                    break;
                }
            }
        }
    }
}

/// A socket in a worker's `ReadySet`; removed from it when dropped (the socket must still be
/// open then: the holder drops this first).
pub(crate) struct Interest<'a> {
    set: &'a ReadySet,
    index: u32,
    fd: RawFd,
}

impl Interest<'_> {
    /// Resolves once the socket had an edge (new data, its end, an error) since the last wait
    /// that resolved, or `set_ready` was called; at once, always, after its end or an error
    /// was reported. Cancel-safe: it owns nothing; a dropped wait leaves the edge for the next
    /// one.
    pub(crate) fn wait(&self) -> ReadyWait<'_> {
        ReadyWait { interest: self }
    }

    /// The last read may have left data (it filled its buffer, or a TLS session holds
    /// records): the next `wait` passes at once, as no new edge may come for it.
    pub(crate) fn set_ready(&self) {
        self.set.slots.borrow_mut().entries[self.index as usize].ready = true;
    }
}

impl Drop for Interest<'_> {
    fn drop(&mut self) {
        // SAFETY: the fd is still open (see the type's contract); a null event is allowed for
        // EPOLL_CTL_DEL since Linux 2.6.9. An error (the socket already gone) changes nothing.
        unsafe {
            libc::epoll_ctl(
                self.set.epfd.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                self.fd,
                std::ptr::null_mut(),
            );
        }
        self.set.release(self.index);
    }
}

/// See `Interest::wait`.
pub(crate) struct ReadyWait<'a> {
    interest: &'a Interest<'a>,
}

impl Future for ReadyWait<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let interest = self.interest;
        let mut slots = interest.set.slots.borrow_mut();
        let slot = &mut slots.entries[interest.index as usize];
        if slot.ready || slot.ended {
            slot.ready = false;
            return Poll::Ready(());
        }
        match &mut slot.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            w => *w = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_drivers::on_each_driver;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream as StdUnixStream;

    /// A set with its driver task running (inside a runtime), and a connected pair whose
    /// non-blocking reader end is what the test registers.
    fn driven_set_and_pair() -> (Rc<ReadySet>, StdUnixStream, StdUnixStream) {
        let (set, watch) = ReadySet::new().unwrap();
        monoio::spawn(set.clone().drive(watch));
        let (writer, reader) = StdUnixStream::pair().unwrap();
        reader.set_nonblocking(true).unwrap();
        (set, writer, reader)
    }

    /// Each write is an edge that wakes the waiting reader once; a read that drained the
    /// socket needs no more; a dropped wait leaves its edge for the next.
    #[test]
    fn edges_wake_the_waiting_socket() {
        on_each_driver(|| {
            Box::pin(async {
                let (set, mut writer, reader) = driven_set_and_pair();
                let interest = set.register(reader.as_raw_fd()).unwrap();
                for round in 0..3u8 {
                    writer.write_all(&[round]).unwrap();
                    interest.wait().await;
                    let mut byte = [0u8; 8];
                    assert_eq!((&reader).read(&mut byte).unwrap(), 1);
                    assert_eq!(byte[0], round);
                }
                // Nothing new: a wait stays pending (checked with a noop waker).
                let mut wait = Box::pin(interest.wait());
                let mut cx = Context::from_waker(Waker::noop());
                assert!(wait.as_mut().poll(&mut cx).is_pending());
                drop(wait);
                // set_ready: the next wait passes at once.
                interest.set_ready();
                interest.wait().await;
                // An edge while nobody waits is kept.
                writer.write_all(b"x").unwrap();
                monoio::time::sleep(std::time::Duration::from_millis(5)).await;
                interest.wait().await;
                drop(interest);
                // The socket left the set: its slot is free again.
                assert_eq!(set.slots.borrow().free.len(), 1);
            })
        });
    }

    /// The peer's end, reported in the same event as its last data, keeps every later wait
    /// passing: the read that takes the data is short, and the end is yet to be read.
    #[test]
    fn an_end_that_came_with_the_last_data_is_not_lost() {
        on_each_driver(|| {
            Box::pin(async {
                let (set, mut writer, reader) = driven_set_and_pair();
                let interest = set.register(reader.as_raw_fd()).unwrap();
                writer.write_all(b"last").unwrap();
                drop(writer);
                interest.wait().await;
                let mut buf = [0u8; 64];
                assert_eq!((&reader).read(&mut buf).unwrap(), 4);
                interest.wait().await;
                assert_eq!((&reader).read(&mut buf).unwrap(), 0, "the end");
            })
        });
    }

    /// Data that is in the socket before it joins the set counts as an edge.
    #[test]
    fn data_already_there_counts() {
        on_each_driver(|| {
            Box::pin(async {
                let (set, mut writer, reader) = driven_set_and_pair();
                writer.write_all(b"early").unwrap();
                let interest = set.register(reader.as_raw_fd()).unwrap();
                interest.wait().await;
            })
        });
    }
}
