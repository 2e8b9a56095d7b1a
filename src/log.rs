//! Log lines on stderr: one line per notable event (start-up, upstream errors, shutdown), never
//! one per relayed message. The level is global and read with one relaxed atomic load.

use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::cli::{LogFormat, LogLevel};

static LEVEL: AtomicU8 = AtomicU8::new(LogLevel::Info as u8);
/// 0 = text, 1 = JSON lines.
static FORMAT: AtomicU8 = AtomicU8::new(0);

/// Sets the line format (`--log-format`).
pub fn set_format(format: LogFormat) {
    FORMAT.store(u8::from(format == LogFormat::Json), Ordering::Relaxed);
}

/// Sets the level from the flag, else from `RUST_LOG` (error|warn|info|debug|trace), else info.
pub fn init(flag: Option<LogLevel>) {
    let level = flag.unwrap_or_else(|| {
        match std::env::var("RUST_LOG")
            .unwrap_or_default()
            .to_ascii_lowercase()
            .as_str()
        {
            "error" => LogLevel::Error,
            "warn" => LogLevel::Warn,
            "debug" | "trace" => LogLevel::Debug,
            _ => LogLevel::Info,
        }
    });
    LEVEL.store(level as u8, Ordering::Relaxed);
}

pub fn enabled(level: LogLevel) -> bool {
    level as u8 <= LEVEL.load(Ordering::Relaxed)
}

/// Writes one line; the lock on stderr keeps lines from different workers whole.
pub fn write(level: LogLevel, args: std::fmt::Arguments<'_>) {
    let name = match level {
        LogLevel::Error => "ERROR",
        LogLevel::Warn => "WARN",
        LogLevel::Info => "INFO",
        LogLevel::Debug => "DEBUG",
    };
    let line = if FORMAT.load(Ordering::Relaxed) == 1 {
        format!(
            "{{\"ts\":\"{}\",\"level\":\"{}\",\"msg\":{}}}\n",
            utc_timestamp(),
            name.to_ascii_lowercase(),
            crate::admin::json_string(&args.to_string())
        )
    } else {
        format!("{} {name:5} {args}\n", utc_timestamp())
    };
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` from the system clock (civil-from-days, Howard Hinnant's algorithm).
pub fn utc_timestamp() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.subsec_millis()
    )
}

#[macro_export]
macro_rules! log_at {
    ($level:expr, $($arg:tt)*) => {
        if $crate::log::enabled($level) {
            $crate::log::write($level, format_args!($($arg)*));
        }
    };
}
#[macro_export]
macro_rules! log_error { ($($arg:tt)*) => { $crate::log_at!($crate::cli::LogLevel::Error, $($arg)*) }; }
#[macro_export]
macro_rules! log_warn { ($($arg:tt)*) => { $crate::log_at!($crate::cli::LogLevel::Warn, $($arg)*) }; }
#[macro_export]
macro_rules! log_info { ($($arg:tt)*) => { $crate::log_at!($crate::cli::LogLevel::Info, $($arg)*) }; }
#[macro_export]
macro_rules! log_debug { ($($arg:tt)*) => { $crate::log_at!($crate::cli::LogLevel::Debug, $($arg)*) }; }

#[cfg(test)]
mod tests {
    #[test]
    fn timestamp_has_the_right_shape() {
        let t = super::utc_timestamp();
        assert_eq!(t.len(), 24, "{t}");
        assert!(t.ends_with('Z') && t.as_bytes()[10] == b'T', "{t}");
    }
}
