//! The `rrqnet` binary: parse the command line, pick the logger, run the
//! daemon, and map the outcome to an exit status (2 for a bad argument, 1 for
//! a failure at start or run time, 0 when the local end closed or a SIGTERM
//! or SIGINT asked the daemon to stop).

use std::process::ExitCode;
use std::time::Instant;

use rrqnet::cli::{self, Invocation};
use rrqnet::daemon::{Daemon, Exit};

fn init_logging(verbosity: u8) {
    let level = match verbosity {
        0 => log::LevelFilter::Warn,
        1 => log::LevelFilter::Info,
        2 => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    };
    let config = simplelog::ConfigBuilder::new()
        .set_target_level(log::LevelFilter::Off)
        .set_thread_level(log::LevelFilter::Off)
        .set_location_level(log::LevelFilter::Off)
        .build();
    let _ = simplelog::WriteLogger::init(level, config, std::io::LineWriter::new(std::io::stderr()));
}

fn main() -> ExitCode {
    let cfg = match cli::parse(std::env::args_os()) {
        Ok(Invocation::Run(cfg)) => cfg,
        Ok(Invocation::Print(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("rrqnet: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(cfg.verbosity);
    let mut daemon = match Daemon::new(&cfg, Instant::now()) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("rrqnet: {e}");
            return ExitCode::from(1);
        }
    };
    if let Err(e) = rrqnet::sys::catch_termination() {
        log::warn!("cannot catch SIGTERM and SIGINT ({e}); they will end rrqnet without its statistics");
    }
    let result = daemon.run();
    daemon.finish();
    match result {
        Ok(Exit::LocalClosed | Exit::Terminated) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::from(1)
        }
    }
}
