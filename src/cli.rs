//! The command line, in two stages: clap reads the options close to argv,
//! then [`Config::try_from`] turns them, and the positional part, into a typed
//! [`Config`]. Tests drive [`parse`] with string slices.

use clap::{Arg, ArgAction, ArgMatches, Command};

use crate::config::{self, ArgError, Config, LocalEnd};

/// What the command line asks for.
#[derive(Debug)]
pub enum Invocation {
    /// Run the daemon.
    Run(Config),
    /// Print this text to stdout and exit 0 (`--help`, `--version`).
    Print(String),
}

const ABOUT: &str = "A virtual-cable Ethernet switch: channels Ethernet frames between UDP \
remotes and a tap interface or stdin/stdout (VDE framing).";

const AFTER: &str = "\
Remote declarations (after the port):
  a.b.c.d[/n][:port][=keyfile]     IPv4 block
  addr6[/n][=keyfile]              IPv6 block, no port
  [addr6[/n]][:port][=keyfile]     IPv6 block in brackets
  ... -i mac[,mac]*                MACs to drop on that declaration's remotes
A full address with a port is an uplink (kept alive by heartbeats every 30 s);
anything else is a downlink mask for remotes that uplink to us.

-B n sizes the receive batch and buffer pool (default 32). -T n is accepted for
compatibility with the C rrqnet; this rrqnet runs one event loop and -T changes nothing.";

fn command() -> Command {
    Command::new("rrqnet")
        .version(env!("CARGO_PKG_VERSION"))
        .about(ABOUT)
        .override_usage("rrqnet [-v|-vv|-vvv] [-4] [-B n] [-T n] [-m mcast] [-t tap] [port] (remote [-i mac[,mac]*])*")
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
        .arg(Arg::new("buffers").short('B').value_name("n").action(ArgAction::Set).help("Receive buffers, 1-1024"))
        .arg(
            Arg::new("threads")
                .short('T')
                .value_name("n")
                .action(ArgAction::Set)
                .help("Dispatch threads, 1-1024 (no effect)"),
        )
        .arg(
            Arg::new("mcast")
                .short('m')
                .value_name("mcast")
                .action(ArgAction::Set)
                .help("IPv4 multicast channel group:port[=keyfile]"),
        )
        .arg(
            Arg::new("tap")
                .short('t')
                .value_name("tap")
                .action(ArgAction::Set)
                .allow_hyphen_values(true)
                .help("Tap interface as local end, or '-' for stdin/stdout"),
        )
        .arg(
            Arg::new("rest")
                .value_name("port")
                .num_args(0..)
                .trailing_var_arg(true)
                .allow_hyphen_values(true)
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
    let mut cmd = command();
    let matches = match cmd.try_get_matches_from_mut(argv) {
        Ok(m) => m,
        Err(e) => {
            use clap::error::ErrorKind;
            return match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => Ok(Invocation::Print(e.render().to_string())),
                _ => Err(clap_error(&e)),
            };
        }
    };
    Config::try_from(&matches).map(Invocation::Run)
}

/// Turns clap's multi-line error into our one-line form.
fn clap_error(e: &clap::Error) -> ArgError {
    use clap::error::{ContextKind, ContextValue};
    let arg = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(s)) => s.clone(),
        _ => String::new(),
    };
    let text = e.render().to_string();
    let first = text.lines().next().unwrap_or("invalid arguments").trim_start_matches("error: ");
    ArgError { arg, expected: first.to_owned() }
}

fn non_utf8(m: &ArgMatches, id: &str) -> Option<String> {
    m.get_raw(id).and_then(|mut v| v.find(|s| s.to_str().is_none())).map(|s| s.to_string_lossy().into_owned())
}

impl TryFrom<&ArgMatches> for Config {
    type Error = ArgError;

    fn try_from(m: &ArgMatches) -> Result<Config, ArgError> {
        for id in ["buffers", "threads", "mcast", "tap", "rest"] {
            if let Some(bad) = non_utf8(m, id) {
                return Err(ArgError::new(&bad, "expected UTF-8 text"));
            }
        }
        let get = |id: &str| m.get_raw(id).and_then(|mut v| v.next()).and_then(|s| s.to_str()).map(str::to_owned);
        let ipv4_only = m.get_flag("ipv4");
        let multicast = get("mcast").map(|s| config::parse_mcast(&s)).transpose()?;
        let local = match get("tap") {
            None => LocalEnd::None,
            Some(t) => config::parse_tap(&t)?,
        };
        let rest: Vec<String> =
            m.get_raw("rest").map(|v| v.map(|s| s.to_string_lossy().into_owned()).collect()).unwrap_or_default();
        let (port, remotes) = config::parse_positionals(&rest, ipv4_only, multicast.is_some())?;
        Ok(Config {
            verbosity: m.get_count("verbose").min(3),
            ipv4_only,
            buffers: get("buffers").map(|s| config::parse_count(&s, "receive buffers")).transpose()?,
            threads: get("threads").map(|s| config::parse_count(&s, "threads")).transpose()?,
            multicast,
            local,
            port,
            remotes,
        })
    }
}
