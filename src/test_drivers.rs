//! Unit tests of worker-level machinery (timers, turns, the readiness set) run their body on
//! both monoio drivers in one test: the drivers park, wake and cancel differently, so a pass on
//! one proves nothing about the other.

use std::future::Future;

/// Runs `body` on an epoll runtime, then on an io_uring one, whatever driver the environment
/// selects. A machine without io_uring fails the test rather than skipping half of it.
pub(crate) fn on_each_driver<F: Future<Output = ()>>(body: impl Fn() -> F) {
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .expect("epoll runtime")
        .block_on(body());
    monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .enable_timer()
        .build()
        .expect("io_uring runtime (this machine has it; the suite needs both drivers)")
        .block_on(body());
}
