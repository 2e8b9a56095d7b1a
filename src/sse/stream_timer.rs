//! The one timer a stream holds while something is due (a heartbeat, a timeout).

use std::future::{poll_fn, Future};
use std::rc::Rc;
use std::task::Poll;

use crate::stamp::Stamp;
use crate::timers::{TimerSlot, Timers};

/// A stream's one timer: a slot of the worker's timers (crate::timers), taken when something
/// is due, re-armed for each new deadline, given back when nothing is (a quiet stream without
/// heartbeats or idle timeout holds none).
#[derive(Default)]
pub(super) struct StreamTimer(Option<TimerSlot>);

impl StreamTimer {
    pub(super) fn arm(&mut self, timers: &Rc<Timers>, at: Stamp) {
        self.0.get_or_insert_with(|| TimerSlot::new(timers)).arm(at);
    }

    pub(super) fn disarm(&mut self) {
        self.0 = None;
    }

    /// Resolves when the armed deadline passes; never when disarmed. Cancel-safe (a timer).
    /// A `poll_fn` over the slot rather than an async fn: 8 bytes of the select every stream
    /// waits in, where the async fn (its `&mut self` beside the slot's own future) took 48
    /// (`proxy::conn::tests::a_stream_task_stays_small`).
    pub(super) fn fired(&mut self) -> impl Future<Output = ()> + '_ {
        poll_fn(move |cx| match &mut self.0 {
            Some(slot) => slot.poll_fired(cx),
            None => Poll::Pending,
        })
    }
}

#[cfg(test)]
mod tests {
    /// A stream's select holds this wait: 48 bytes as an async fn around `TimerSlot::fired`,
    /// 8 as a `poll_fn` over the slot (`StreamTimer::fired`).
    #[test]
    fn the_timer_wait_stays_small() {
        let mut timer = super::StreamTimer::default();
        let size = std::mem::size_of_val(&timer.fired());
        assert!(size <= 8, "StreamTimer::fired is {size} bytes");
    }
}
