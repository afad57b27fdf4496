//! The command line, in two stages: clap reads the options close to argv,
//! each option's value already typed by our own value parsers, then
//! [`Config::try_from`] turns them, and the positional part (the manual's
//! grammar, which clap cannot express), into a typed [`Config`]. clap's
//! errors are mapped from their kinds and contexts to our one-line
//! [`ArgError`], never from their rendered text. Tests drive [`parse`] with
//! string slices.

use clap::{Arg, ArgAction, ArgMatches, Command};

use crate::config::{self, ArgError, Config, LocalEnd, McastSpec};

/// What the command line asks for.
#[derive(Debug)]
pub enum Invocation {
    /// Run the daemon.
    Run(Config),
    /// Print this text to stdout and exit 0 (`--help`, `--version`).
    Print(String),
    /// Read a running daemon's status socket (`--status PATH`) and print it.
    Status {
        /// The socket.
        path: std::path::PathBuf,
        /// How to print it.
        format: StatusFormat,
    },
    /// Switch off the offloads a killed rrqnet left on a persistent tap
    /// (`--release-tap NAME`).
    ReleaseTap(String),
}

/// How `rrqnet --status` prints what it read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFormat {
    /// A readable table.
    Table,
    /// The JSON document as it came (`--json`).
    Json,
    /// The Prometheus text exposition format (`--prometheus`).
    Prometheus,
}

const ABOUT: &str = "A virtual-cable Ethernet switch: channels Ethernet frames between UDP \
remotes and a tap interface or stdin/stdout (VDE framing).";

const AFTER: &str = "\
Remote declarations (after the port):
  a.b.c.d[/n][:port][=keyfile]     IPv4 block
  addr6[/n][=keyfile]              IPv6 block, no port
  [addr6[/n]][:port][=keyfile]     IPv6 block in brackets
  ... -i mac[,mac]*                MACs to drop on that declaration's remotes
  ... -r n                         at most n remotes from that downlink at once
                                   (1-4096, default 256)
A full address with a port is an uplink (kept alive by heartbeats every 30 s);
anything else is a downlink mask for remotes that uplink to us. -r follows its
declaration like -i: the key file path takes everything after '=', so nothing
can be appended to a declaration itself.

--user USER comes after the manual's options, before the port: rrqnet switches
to USER and its groups once the tap, the sockets and the key files are open.

-B n sizes the receive batch and buffer pool (default 32). -T n is accepted for
compatibility with the C rrqnet; this rrqnet runs one event loop and -T changes nothing.

--join-udp (with a tap, Linux 6.2 or later) joins UDP datagrams of one flow that
arrive together into one super-frame for the tap, which the kernel cuts back:
less CPU per datagram where the receiving programs keep up (QUIC, media). Off by
default: a sender that overruns a receiver on the same cores loses more.

Watching a running rrqnet (additions to the manual's grammar):
  --status-socket PATH   serve a JSON status document on a Unix socket (mode 0600)
  rrqnet --status PATH [--json|--prometheus]
                         print a running rrqnet's status (a table by default)
  SIGUSR1 or SIGUSR2     the daemon writes a status dump to stderr
  SIGHUP                 logged and ignored; SIGTERM and SIGINT end the daemon

rrqnet --release-tap NAME
  switches off the offloads of the persistent tap NAME, as rrqnet does when it
  exits: for a tap whose rrqnet was killed (SIGKILL), before another program
  (vde_plug, QEMU) opens it";

/// The close-to-argv stage. Option values may start with '-', as with getopt:
/// `-t -` is stdio and `-B -1` is a bad count, not a missing value.
fn command() -> Command {
    Command::new("rrqnet")
        .version(env!("CARGO_PKG_VERSION"))
        .about(ABOUT)
        .override_usage("rrqnet [-v|-vv|-vvv] [-4] [-B n] [-T n] [-m mcast] [-t tap] [--user USER] [--join-udp] [port] (remote [-i mac[,mac]*] [-r n])*")
        .after_help(AFTER)
        .disable_help_subcommand(true)
        .dont_delimit_trailing_values(true)
        .arg(
            Arg::new("verbose")
                .short('v')
                .action(ArgAction::Count)
                .help("Log to stderr: -v info, -vv debug, -vvv trace"),
        )
        .arg(Arg::new("ipv4").short('4').action(ArgAction::SetTrue).help("Use an IPv4-only UDP socket"))
        .arg(
            Arg::new("buffers")
                .short('B')
                .value_name("n")
                .action(ArgAction::Set)
                .value_parser(|s: &str| config::parse_count(s, "receive buffers"))
                .allow_hyphen_values(true)
                .help("Receive buffers, 1-1024"),
        )
        .arg(
            Arg::new("threads")
                .short('T')
                .value_name("n")
                .action(ArgAction::Set)
                .value_parser(|s: &str| config::parse_count(s, "threads"))
                .allow_hyphen_values(true)
                .help("Dispatch threads, 1-1024 (no effect)"),
        )
        .arg(
            Arg::new("mcast")
                .short('m')
                .value_name("mcast")
                .action(ArgAction::Set)
                .value_parser(config::parse_mcast)
                .allow_hyphen_values(true)
                .help("IPv4 multicast channel group:port[=keyfile]"),
        )
        .arg(
            Arg::new("tap")
                .short('t')
                .value_name("tap")
                .action(ArgAction::Set)
                .value_parser(config::parse_tap)
                .allow_hyphen_values(true)
                .help("Tap interface as local end, or '-' for stdin/stdout"),
        )
        .arg(
            Arg::new("status-socket")
                .long("status-socket")
                .value_name("PATH")
                .action(ArgAction::Set)
                .value_parser(clap::value_parser!(std::path::PathBuf))
                .help("Serve a JSON status document on this Unix socket"),
        )
        .arg(
            Arg::new("status")
                .long("status")
                .value_name("PATH")
                .action(ArgAction::Set)
                .value_parser(clap::value_parser!(std::path::PathBuf))
                .help("Print the status of the rrqnet serving this socket, then exit"),
        )
        .arg(
            Arg::new("release-tap")
                .long("release-tap")
                .value_name("NAME")
                .action(ArgAction::Set)
                .conflicts_with_all(["status", "tap", "status-socket", "user"])
                .help("Switch off the offloads a killed rrqnet left on this persistent tap, then exit"),
        )
        .arg(
            Arg::new("json")
                .long("json")
                .action(ArgAction::SetTrue)
                .requires("status")
                .conflicts_with("prometheus")
                .help("With --status: the JSON document as it came"),
        )
        .arg(
            Arg::new("prometheus")
                .long("prometheus")
                .action(ArgAction::SetTrue)
                .requires("status")
                .help("With --status: the counters in the Prometheus text format"),
        )
        .arg(
            Arg::new("user")
                .long("user")
                .value_name("USER")
                .action(ArgAction::Set)
                .value_parser(config::parse_user)
                .allow_hyphen_values(true)
                .help("Run as USER (and its groups) once the tap, sockets and keys are open"),
        )
        .arg(
            Arg::new("join-udp")
                .long("join-udp")
                .action(ArgAction::SetTrue)
                .help("Join UDP datagrams of one flow into super-frames for the tap (Linux 6.2 or later)"),
        )
        .arg(
            // No allow_hyphen_values here: with it clap hands any short cluster
            // holding an unknown letter (`-B3`, `-ttap0`) to the positional.
            // trailing_var_arg alone already takes `-i` and everything else
            // after the port as values.
            Arg::new("rest")
                .value_name("port")
                .num_args(0..)
                .trailing_var_arg(true)
                .action(ArgAction::Append)
                .help("UDP port, then remote declarations"),
        )
}

/// Parses argv (including the program name).
pub fn parse<I, T>(argv: I) -> Result<Invocation, ArgError>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let argv: Vec<std::ffi::OsString> = argv.into_iter().map(Into::into).collect();
    // clap's own UTF-8 error does not say which argument; ours does.
    if let Some(bad) = argv.iter().skip(1).find(|a| a.to_str().is_none()) {
        return Err(ArgError::new(&bad.to_string_lossy(), "expected UTF-8 text"));
    }
    let argv_text: Vec<String> = argv.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let mut cmd = command();
    let matches = match cmd.try_get_matches_from_mut(argv) {
        Ok(m) => m,
        Err(e) => {
            use clap::error::ErrorKind;
            return match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => Ok(Invocation::Print(e.render().to_string())),
                _ => Err(clap_error(&e, &argv_text)),
            };
        }
    };
    if let Some(name) = matches.get_one::<String>("release-tap") {
        if let Some(extra) = matches.get_raw("rest").and_then(|mut v| v.next()) {
            let extra = extra.to_string_lossy();
            return Err(ArgError::new(&extra, "--release-tap takes no port or remotes: it only resets a tap"));
        }
        return Ok(Invocation::ReleaseTap(name.clone()));
    }
    if let Some(path) = matches.get_one::<std::path::PathBuf>("status") {
        if let Some(extra) = matches.get_raw("rest").and_then(|mut v| v.next()) {
            let extra = extra.to_string_lossy();
            return Err(ArgError::new(&extra, "--status takes no port or remotes: it reads a running rrqnet's socket"));
        }
        let format = if matches.get_flag("json") {
            StatusFormat::Json
        } else if matches.get_flag("prometheus") {
            StatusFormat::Prometheus
        } else {
            StatusFormat::Table
        };
        return Ok(Invocation::Status { path: path.clone(), format });
    }
    Config::try_from(&matches).map(Invocation::Run)
}

/// What a value-taking option expected, when its value is missing.
fn missing_value(opt: &str) -> Option<&'static str> {
    Some(match opt {
        "-t" => "expected a tap interface name or '-' (stdin/stdout) after -t",
        "-m" => "expected a multicast channel after -m, as group:port[=keyfile], e.g. 239.1.2.3:2000",
        "-B" => "expected a number of receive buffers (1-1024) after -B",
        "-T" => "expected a number of threads (1-1024) after -T",
        "--user" => "expected a user name after --user",
        _ => return None,
    })
}

/// Turns clap's error into our one-line form, from its kind and context:
/// the option alone as the argument (`-t`, not `-t <tap>`), or the value
/// with the option it belongs to, and what was expected.
fn clap_error(e: &clap::Error, argv: &[String]) -> ArgError {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let context = |kind| match e.get(kind) {
        Some(ContextValue::String(s)) => s.clone(),
        _ => String::new(),
    };
    // "-B <n>" names the option; the option alone is what the user typed.
    let option = context(ContextKind::InvalidArg).split(' ').next().unwrap_or_default().to_owned();
    match e.kind() {
        // Our own value parser refused the value: its message, with the option.
        ErrorKind::ValueValidation => {
            let value = context(ContextKind::InvalidValue);
            let ours = std::error::Error::source(e).and_then(|s| s.downcast_ref::<ArgError>());
            let expected = ours.map_or_else(|| "an invalid value".to_owned(), |a| a.expected.clone());
            ArgError::new(&value, expected).of_option(&option)
        }
        ErrorKind::UnknownArgument if option == "-i" => {
            ArgError::new(&option, "-i must follow a remote declaration, after the port")
        }
        ErrorKind::UnknownArgument => ArgError::new(&option, format!("unknown option ({})", config::OPTIONS)),
        ErrorKind::InvalidValue | ErrorKind::NoEquals => match missing_value(&option) {
            Some(text) => ArgError::new(&option, text),
            None => ArgError::new(&option, format!("expected a value after {option}")),
        },
        ErrorKind::ArgumentConflict if option == "--json" || option == "--prometheus" => {
            ArgError::new(&option, "--json and --prometheus are two ways to print the status: pick one")
        }
        ErrorKind::ArgumentConflict if argv.iter().any(|a| a == "--release-tap") => {
            ArgError::new(&option, "--release-tap NAME is a command of its own: it takes no other option")
        }
        ErrorKind::ArgumentConflict if !option.is_empty() => {
            ArgError::new(&option, format!("{option} may be given only once"))
        }
        // The one requirement there is: --json and --prometheus need --status.
        ErrorKind::MissingRequiredArgument => {
            let given = argv.iter().find(|a| *a == "--json" || *a == "--prometheus").map_or("", String::as_str);
            ArgError::new(given, "--json and --prometheus go with --status PATH")
        }
        _ if !option.is_empty() => ArgError::new(&option, format!("cannot be used this way ({})", config::OPTIONS)),
        _ => ArgError::new("", format!("invalid command line ({})", config::OPTIONS)),
    }
}

impl TryFrom<&ArgMatches> for Config {
    type Error = ArgError;

    fn try_from(m: &ArgMatches) -> Result<Config, ArgError> {
        let ipv4_only = m.get_flag("ipv4");
        let multicast = m.get_one::<McastSpec>("mcast").cloned();
        let local = m.get_one::<LocalEnd>("tap").cloned().unwrap_or(LocalEnd::None);
        let rest: Vec<String> =
            m.get_raw("rest").map(|v| v.map(|s| s.to_string_lossy().into_owned()).collect()).unwrap_or_default();
        let (port, remotes) = config::parse_positionals(&rest, ipv4_only, multicast.is_some())?;
        Ok(Config {
            verbosity: m.get_count("verbose").min(3),
            ipv4_only,
            buffers: m.get_one::<u16>("buffers").copied(),
            threads: m.get_one::<u16>("threads").copied(),
            multicast,
            local,
            port,
            remotes,
            status_socket: m.get_one::<std::path::PathBuf>("status-socket").cloned(),
            user: m.get_one::<String>("user").cloned(),
            join_udp: m.get_flag("join-udp"),
        })
    }
}
