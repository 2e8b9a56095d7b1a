//! tether's entry point: parse the command line, start one worker per core, wait for a signal.

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use tether::cli::{Cli, Command, LogLevel};
use tether::config::Config;

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
    let argv: Vec<OsString> = std::env::args_os().collect();
    let cli = Cli::parse_from(&argv);
    match cli.command {
        Command::Reverse(cli_args) => {
            // The command line over the file it names: the settings (log ones included) are
            // known only once the file is read; its errors are logged as the command line says.
            let loaded = match tether::config_file::load(&argv) {
                Ok(loaded) => loaded,
                Err(e) => return refuse(cli_args.log_level, cli_args.log_format, &e),
            };
            let args = &loaded.args;
            tether::log::init(args.log_level);
            tether::log::set_format(args.log_format);
            let config = match Config::from_loaded(&loaded) {
                Ok(config) => config,
                Err(e) => return refuse(args.log_level, args.log_format, &loaded.place(e)),
            };
            let reload = tether::reload::ConfigReload::new(argv.clone(), &loaded, &config);
            match tether::server::run_reverse(config, reload) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tether::log_error!("{e}");
                    let _ = std::io::stderr().flush();
                    ExitCode::from(2)
                }
            }
        }
        Command::Check(_) => match tether::check::report(&argv) {
            Ok(report) => {
                print!("{report}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("tether check: {e}");
                ExitCode::FAILURE
            }
        },
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

/// Logs why the configuration cannot run, and exits 2 (as any start-up failure does).
fn refuse(
    level: Option<LogLevel>,
    format: tether::cli::LogFormat,
    error: &dyn std::fmt::Display,
) -> ExitCode {
    tether::log::init(level);
    tether::log::set_format(format);
    tether::log_error!("{error}");
    let _ = std::io::stderr().flush();
    ExitCode::from(2)
}
