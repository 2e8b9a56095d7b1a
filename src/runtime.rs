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
                match RuntimeBuilder::<IoUringDriver>::new()
                    .with_entries(entries)
                    .enable_timer()
                    .build()
                {
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
