//! A program embedding tether with an interceptor of its own, beside the configuration file's
//! rules: every SSE event of a `/feeds/` stream gets its data stamped with the time tether saw
//! it, and any event whose data mentions a card number-like run of 16 digits is dropped.
//!
//! Run it exactly as `tether reverse` (same flags, same `--config` file):
//!
//! ```text
//! cargo run --release --example interceptor -- --bind 127.0.0.1:8080 --upstream http://127.0.0.1:3000
//! ```
//!
//! An interceptor acts at one stage (request, response or event). `applies_to` is asked once
//! per request, from its head: a request it declines never calls it, so a program's own rule
//! costs nothing on requests it does not concern. `on_event` is called for each complete event
//! of the requests it accepted; it returns a [`Verdict`] (drop, or go on with or without a
//! change), and a change made with `set_data` keeps the event's `id:` and `event:` lines, and is
//! what the replay ring records, so a client that reconnects is replayed what it was sent.

use std::ffi::OsString;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tether::config::Config;
use tether::reload::ConfigReload;
use tether::rules::{EventMessage, Interceptor, RequestView, Stage, Verdict};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Stamps each event of `/feeds/` streams, and drops those that look like they carry a card
/// number.
#[derive(Debug)]
struct StampFeeds;

impl Interceptor for StampFeeds {
    fn name(&self) -> &str {
        "stamp-feeds"
    }

    fn stage(&self) -> Stage {
        Stage::Event
    }

    fn action(&self) -> &str {
        "stamp"
    }

    fn applies_to(&self, request: &RequestView<'_>) -> bool {
        request.path().starts_with(b"/feeds/")
    }

    fn on_event(&self, event: &mut EventMessage<'_>) -> Verdict {
        if has_card_number(event.data()) {
            return Verdict::Drop;
        }
        let seen_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let stamped = format!("{}\nseen-by-tether-ms: {seen_ms}", event.data());
        event.set_data(stamped);
        Verdict::Matched { acted: true }
    }
}

/// Sixteen digits in a row (spaces between groups allowed).
fn has_card_number(data: &str) -> bool {
    let mut run = 0;
    for c in data.chars() {
        match c {
            '0'..='9' => {
                run += 1;
                if run == 16 {
                    return true;
                }
            }
            ' ' if run > 0 && run % 4 == 0 => {}
            _ => run = 0,
        }
    }
    false
}

fn main() -> ExitCode {
    // The same command line as `tether reverse`, without the word `reverse`.
    let mut argv: Vec<OsString> = std::env::args_os().collect();
    argv.insert(1, "reverse".into());
    let loaded = match tether::config_file::load(&argv) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    tether::log::init(loaded.args.log_level);
    let mut config = match Config::from_loaded(&loaded) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{}", loaded.place(e));
            return ExitCode::from(2);
        }
    };
    // After the file's rules, on every route; kept across SIGHUP reloads.
    config.interceptors.push(Arc::new(StampFeeds));
    let reload = ConfigReload::new(argv, &loaded, &config);
    match tether::server::run_reverse(config, reload) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}
