//! tether's entry point: parse the command line, start one worker per core, wait for a signal.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use tether::cli::{Cli, Command, LogLevel};

#[cfg(not(feature = "alloc-census"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// With `--features alloc-census`: mimalloc with live allocations counted by size (perf work;
/// see src/alloc_census.rs).
#[cfg(feature = "alloc-census")]
#[global_allocator]
static GLOBAL: tether::alloc_census::CountingMimalloc = tether::alloc_census::CountingMimalloc {
    census: tether::alloc_census::Census::new(),
};

fn main() -> ExitCode {
    #[cfg(feature = "alloc-census")]
    GLOBAL.census.start_reports();
    let cli = Cli::parse();
    match cli.command {
        Command::Reverse(args) => {
            tether::log::init(args.log_level);
            tether::log::set_format(args.log_format);
            match tether::server::run_reverse(&args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tether::log_error!("{e}");
                    let _ = std::io::stderr().flush();
                    ExitCode::from(2)
                }
            }
        }
        Command::Demo(args) => {
            tether::log::init(Some(if args.verbose {
                LogLevel::Info
            } else {
                LogLevel::Warn
            }));
            match tether::demo::run(&args) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("demo: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}
