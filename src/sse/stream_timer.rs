//! The one timer a stream holds while something is due (a heartbeat, a timeout).

use std::rc::Rc;
use std::time::Instant;

use crate::timers::{TimerSlot, Timers};

/// A stream's one timer: a slot of the worker's timers (crate::timers), taken when something
/// is due, re-armed for each new deadline, given back when nothing is (a quiet stream without
/// heartbeats or idle timeout holds none).
#[derive(Default)]
pub(super) struct StreamTimer(Option<TimerSlot>);

impl StreamTimer {
    pub(super) fn arm(&mut self, timers: &Rc<Timers>, at: Instant) {
        self.0.get_or_insert_with(|| TimerSlot::new(timers)).arm(at);
    }

    pub(super) fn disarm(&mut self) {
        self.0 = None;
    }

    /// Resolves when the armed deadline passes; never when disarmed. Cancel-safe (a timer).
    pub(super) async fn fired(&mut self) {
        match &mut self.0 {
            Some(slot) => slot.fired().await,
            None => std::future::pending().await,
        }
    }
}
