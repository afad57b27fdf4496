//! The `rrqnet` binary: parse the command line, pick the logger, run the
//! daemon, and map the outcome to an exit status (2 for a bad argument, 1 for
//! a failure at start or run time, 0 when the local end closed or a SIGTERM
//! or SIGINT asked the daemon to stop). Errors are printed as one line: the
//! error and its chain of causes.

use std::error::Error;
use std::process::ExitCode;

use rrqnet::cli::{self, Invocation};
use rrqnet::daemon::{Daemon, Exit};
use rrqnet::node::Now;

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

/// An error and its causes on one line, "a: b: c". A cause whose text the
/// line already ends with (an error that prints its own cause) is not
/// repeated.
fn chain(e: &dyn Error) -> String {
    let mut line = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !line.ends_with(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = c.source();
    }
    line
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
    let mut daemon = match Daemon::new(&cfg, Now::read()) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("rrqnet: {}", chain(&e));
            return ExitCode::from(1);
        }
    };
    let result = daemon.run();
    daemon.finish();
    match result {
        Ok(Exit::LocalClosed | Exit::Terminated) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{}", chain(&e));
            ExitCode::from(1)
        }
    }
}
