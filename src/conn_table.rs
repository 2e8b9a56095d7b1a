//! A worker's registry of its live client connections, so that a drain can find them.
//!
//! Each connection task registers the fd of its client socket (and of its current upstream socket
//! while it has one) and whether it sits idle between requests. The drain shuts idle connections
//! down at once and, when the grace period ends, every remaining socket: `shutdown(2)` makes each
//! task's pending read return, so tasks end by themselves and no in-flight future is dropped.
//! Single-threaded (one table per worker): `RefCell`, no locks.

use std::cell::{Cell, RefCell};
use std::os::fd::RawFd;
use std::rc::Rc;

use crate::conn_io::shutdown_fd;

#[derive(Debug, Clone, Copy)]
struct Entry {
    client_fd: RawFd,
    upstream_fd: Option<RawFd>,
    /// Between requests: nothing in flight, safe to close at drain start.
    idle: bool,
}

/// Slab of live connections; keys are reused after removal.
#[derive(Debug, Default)]
pub struct ConnTable {
    slots: RefCell<Vec<Option<Entry>>>,
    free: RefCell<Vec<usize>>,
    live: Cell<usize>,
    /// Set once the worker drains: connections finish their current exchange and close.
    draining: Cell<bool>,
    /// Set when the grace period is over and every socket was shut: what a task sees fail now
    /// is the drain, not its peer (an SSE relay must not take it for an upstream drop and
    /// reconnect).
    closing: Cell<bool>,
}

/// A connection's registration; dropping it removes the entry.
pub struct ConnGuard {
    table: Rc<ConnTable>,
    key: usize,
}

impl ConnTable {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn live(&self) -> usize {
        self.live.get()
    }

    pub fn draining(&self) -> bool {
        self.draining.get()
    }

    /// The grace period is over: every registered socket has been shut (see `closing` field).
    pub fn closing(&self) -> bool {
        self.closing.get()
    }

    pub fn register(self: &Rc<Self>, client_fd: RawFd) -> ConnGuard {
        let entry = Entry {
            client_fd,
            upstream_fd: None,
            idle: true,
        };
        let key = match self.free.borrow_mut().pop() {
            Some(key) => {
                self.slots.borrow_mut()[key] = Some(entry);
                key
            }
            None => {
                let mut slots = self.slots.borrow_mut();
                slots.push(Some(entry));
                slots.len() - 1
            }
        };
        self.live.set(self.live.get() + 1);
        ConnGuard {
            table: self.clone(),
            key,
        }
    }

    /// Drain starts: mark, and close every idle connection now.
    pub fn begin_drain(&self) {
        self.draining.set(true);
        for entry in self.slots.borrow().iter().flatten() {
            if entry.idle {
                shutdown_fd(entry.client_fd);
            }
        }
    }

    /// Grace period over: close every socket still open.
    pub fn shutdown_all(&self) {
        self.closing.set(true);
        for entry in self.slots.borrow().iter().flatten() {
            shutdown_fd(entry.client_fd);
            if let Some(fd) = entry.upstream_fd {
                shutdown_fd(fd);
            }
        }
    }

    fn update(&self, key: usize, f: impl FnOnce(&mut Entry)) {
        if let Some(Some(entry)) = self.slots.borrow_mut().get_mut(key) {
            f(entry);
        }
    }
}

impl ConnGuard {
    /// The connection waits for its next request (true) or is serving one (false).
    pub fn set_idle(&self, idle: bool) {
        self.table.update(self.key, |e| e.idle = idle);
    }

    /// The upstream socket the connection currently uses, so the drain can close it too.
    pub fn set_upstream(&self, fd: Option<RawFd>) {
        self.table.update(self.key, |e| e.upstream_fd = fd);
    }

    pub fn draining(&self) -> bool {
        self.table.draining()
    }

    /// The worker has shut every socket at the end of its grace period: a failure seen now is
    /// the drain's doing, and nothing should be reconnected.
    pub fn closing(&self) -> bool {
        self.table.closing()
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.table.slots.borrow_mut()[self.key] = None;
        self.table.free.borrow_mut().push(self.key);
        self.table.live.set(self.table.live.get() - 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_reused_and_counted() {
        let table = Rc::new(ConnTable::new());
        let a = table.register(100);
        let b = table.register(101);
        assert_eq!(table.live(), 2);
        drop(a);
        assert_eq!(table.live(), 1);
        let c = table.register(102);
        assert_eq!(table.slots.borrow().len(), 2, "freed slot reused");
        drop((b, c));
        assert_eq!(table.live(), 0);
    }

    /// Draining, then closing: a guard sees each as the table sets it.
    #[test]
    fn closing_follows_shutdown_all() {
        let table = Rc::new(ConnTable::new());
        // Descriptors that are not open: shutdown(2) fails with EBADF, which is ignored.
        let guard = table.register(-1);
        guard.set_upstream(Some(-1));
        assert!(!guard.draining() && !guard.closing());
        table.begin_drain();
        assert!(guard.draining() && !guard.closing());
        table.shutdown_all();
        assert!(guard.closing());
    }
}
