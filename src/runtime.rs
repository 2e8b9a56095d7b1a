//! Building one monoio runtime per worker: io_uring when the kernel allows it, epoll otherwise.
//!
//! monoio's own fusion builder picks io_uring when `detect_uring()` is true but does not fall back
//! when the ring then fails to set up (entries too large, memlock limits, seccomp): this module
//! does, and says which driver runs.

use std::fmt;

use monoio::time::TimeDriver;
use monoio::{FusionRuntime, IoUringDriver, LegacyDriver, RuntimeBuilder};

use crate::cli::DriverChoice;

/// The runtime type every worker runs, whichever driver it got.
pub type WorkerRuntime = FusionRuntime<TimeDriver<IoUringDriver>, TimeDriver<LegacyDriver>>;

/// Which driver a runtime ended up with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverKind {
    IoUring,
    Epoll,
}

impl fmt::Display for DriverKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DriverKind::IoUring => "io_uring",
            DriverKind::Epoll => "epoll",
        })
    }
}

/// A runtime and, when io_uring was wanted but could not be had, why.
pub struct BuiltRuntime {
    pub runtime: WorkerRuntime,
    pub driver: DriverKind,
    pub fallback_reason: Option<String>,
}

/// An io_uring runtime; `cooperative`: with `IORING_SETUP_COOP_TASKRUN` (Linux 5.19+; the caller
/// retries without it on older kernels).
///
/// Why cooperative: every completion of a readiness wait (a poll on an upstream or client socket)
/// is finished by task work on the worker's thread. By default the kernel interrupts the running
/// worker to run it (a reschedule IPI per wake-up when the socket was woken from another CPU:
/// 6.4 % of tether's CPU in scenario 1a, `irqentry_exit_to_user_mode` under
/// `asm_sysvec_reschedule_ipi`); cooperatively it runs at the worker's next entry into the kernel,
/// which comes within one turn (tether makes its own recv/sendmsg calls, and monoio enters the
/// ring after every round of tasks). Measured interleaved, tether alone, 4 rounds
/// (perf/NOTES.md, "io_uring task work without interrupts"): scenario 1a +13 % events per
/// CPU-second (median 112k vs 99k), scenario 2 latency p50 0.75 vs 1.36 ms, p99 3.9 vs 6.0 ms.
/// `IORING_SETUP_DEFER_TASKRUN` did no better, and would leave completions unreaped while tasks
/// keep the loop busy (monoio submits without GETEVENTS then).
fn uring_runtime(
    entries: u32,
    cooperative: bool,
) -> std::io::Result<monoio::Runtime<TimeDriver<IoUringDriver>>> {
    let mut urb = io_uring::IoUring::builder();
    if cooperative {
        urb.setup_coop_taskrun();
    }
    RuntimeBuilder::<IoUringDriver>::new()
        .with_entries(entries)
        .uring_builder(urb)
        .enable_timer()
        .build()
}

/// Builds a runtime with timers enabled (monoio panics on any sleep/timeout without them).
pub fn build_runtime(choice: DriverChoice, entries: u32) -> Result<BuiltRuntime, String> {
    let legacy = || -> Result<WorkerRuntime, String> {
        RuntimeBuilder::<LegacyDriver>::new()
            .enable_timer()
            .build()
            .map(Into::into)
            .map_err(|e| format!("cannot build the epoll runtime: {e}"))
    };
    let forced_legacy = std::env::var("MONOIO_FORCE_LEGACY_DRIVER").is_ok_and(|v| v == "1");
    match choice {
        DriverChoice::Epoll => Ok(BuiltRuntime {
            runtime: legacy()?,
            driver: DriverKind::Epoll,
            fallback_reason: None,
        }),
        DriverChoice::Uring | DriverChoice::Auto => {
            let unavailable = if forced_legacy {
                Some("MONOIO_FORCE_LEGACY_DRIVER=1 is set".to_string())
            } else if !monoio::utils::detect_uring() {
                Some("the kernel refuses io_uring or lacks an op tether needs (seccomp, io_uring_disabled, old kernel)".to_string())
            } else {
                match uring_runtime(entries, true).or_else(|_| uring_runtime(entries, false)) {
                    Ok(rt) => {
                        return Ok(BuiltRuntime {
                            runtime: rt.into(),
                            driver: DriverKind::IoUring,
                            fallback_reason: None,
                        });
                    }
                    Err(e) => Some(format!(
                        "io_uring set-up with {entries} entries failed: {e}"
                    )),
                }
            };
            let reason = unavailable.unwrap_or_default();
            if choice == DriverChoice::Uring {
                return Err(format!("--driver uring: {reason}"));
            }
            Ok(BuiltRuntime {
                runtime: legacy()?,
                driver: DriverKind::Epoll,
                fallback_reason: Some(reason),
            })
        }
    }
}
