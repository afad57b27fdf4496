//! The `rrqnet` binary: parse the command line, pick the logger, run the
//! daemon (or read a running one's status socket), and map the outcome to
//! an exit status (2 for a bad argument, 1 for a failure at start or run
//! time, 0 when the local end closed or a SIGTERM or SIGINT asked the daemon
//! to stop). Errors are printed as one line: the error and its chain of
//! causes.

use std::error::Error;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use rrqnet::cli::{self, Invocation, StatusFormat};
use rrqnet::daemon::{Daemon, Exit};
use rrqnet::node::Now;
use rrqnet::status::{server, Status};

/// A logger for when stderr is the systemd journal: each line starts with
/// its syslog priority (`<3>` error ... `<7>` trace), and the journal adds
/// the time itself.
struct JournalLogger {
    level: log::LevelFilter,
}

impl log::Log for JournalLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let priority = match record.level() {
            log::Level::Error => 3,
            log::Level::Warn => 4,
            log::Level::Info => 6,
            log::Level::Debug | log::Level::Trace => 7,
        };
        let _ = writeln!(std::io::stderr().lock(), "<{priority}>{}", record.args());
    }

    fn flush(&self) {}
}

/// Whether stderr is the journal: `JOURNAL_STREAM` names its device and
/// inode (systemd sets it for services whose output goes to the journal).
fn stderr_is_journal() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let Ok(stream) = std::env::var("JOURNAL_STREAM") else { return false };
    let Some((dev, ino)) = stream.split_once(':') else { return false };
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else { return false };
    let Ok(meta) = std::fs::File::from(fd).metadata() else { return false };
    dev.parse() == Ok(meta.dev()) && ino.parse() == Ok(meta.ino())
}

fn init_logging(verbosity: u8) {
    let level = match verbosity {
        0 => log::LevelFilter::Warn,
        1 => log::LevelFilter::Info,
        2 => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    };
    if stderr_is_journal() {
        if log::set_boxed_logger(Box::new(JournalLogger { level })).is_ok() {
            log::set_max_level(level);
        }
        return;
    }
    let mut config = simplelog::ConfigBuilder::new();
    config
        .set_target_level(log::LevelFilter::Off)
        .set_thread_level(log::LevelFilter::Off)
        .set_location_level(log::LevelFilter::Off)
        .set_time_format_rfc3339();
    // The local offset, when it can be known; UTC ("Z") otherwise.
    let _ = config.set_time_offset_to_local();
    let _ = simplelog::WriteLogger::init(level, config.build(), std::io::LineWriter::new(std::io::stderr()));
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

/// `rrqnet --status PATH`: one document from the socket, printed.
fn print_status(path: &std::path::Path, format: StatusFormat) -> ExitCode {
    let text = match server::fetch(path, Duration::from_secs(5)) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("rrqnet: cannot read status socket {}: {e}", path.display());
            return ExitCode::from(1);
        }
    };
    let out = match format {
        StatusFormat::Json => text,
        _ => match Status::from_json(&text) {
            Ok(s) if format == StatusFormat::Table => s.table(),
            Ok(s) => s.prometheus(),
            Err(e) => {
                eprintln!("rrqnet: status socket {} sent no status document: {e}", path.display());
                return ExitCode::from(1);
            }
        },
    };
    print!("{out}");
    ExitCode::SUCCESS
}

/// `rrqnet --release-tap NAME`: the tap's offloads off, as at exit.
fn release_tap(name: &str) -> ExitCode {
    match rrqnet::sys::release_tap(name) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let why = match (e.kind(), e.raw_os_error()) {
                (std::io::ErrorKind::NotFound, _) => "there is no tap of that name".to_owned(),
                (std::io::ErrorKind::InvalidInput, _) => "not a tap interface name (a tun, or no name)".to_owned(),
                (_, Some(libc::EBUSY)) => "a program has it open (a running rrqnet switches its offloads off when it \
                                           exits); nothing changed"
                    .to_owned(),
                (_, Some(libc::EPERM)) => "needs root or CAP_NET_ADMIN".to_owned(),
                _ => e.to_string(),
            };
            eprintln!("rrqnet: cannot release tap {name}: {why}");
            ExitCode::from(1)
        }
    }
}

fn main() -> ExitCode {
    let cfg = match cli::parse(std::env::args_os()) {
        Ok(Invocation::Run(cfg)) => cfg,
        Ok(Invocation::Print(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Ok(Invocation::Status { path, format }) => return print_status(&path, format),
        Ok(Invocation::ReleaseTap(name)) => return release_tap(&name),
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
