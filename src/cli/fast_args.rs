//! The start-up fast path of argument parsing.
//!
//! Building clap's command tree for every subcommand, only to find
//! `status`, is a quarter of `nfkit status`'s instructions (callgrind:
//! ~160k of ~650k, README "Performance"). The commands without arguments of
//! their own (`status`, `verify`, `boot`) and `conntrack` with its two flags
//! (`--per-cpu`, `--no-netlink`), with the plain global options, are
//! recognised here instead; anything else, including every error, help and
//! version request, is left to clap ([`parse`] returns `None`).
//!
//! The promise: whenever [`parse`] returns a command line, clap parses the
//! same arguments to the same one (a property test in this file, with clap
//! as the oracle over generated argument lists).

use std::ffi::OsString;
use std::path::PathBuf;

use super::{Cli, Command};

/// `Some` when `args` (without the program name) is one of the simple forms
/// this parser knows, exactly as clap would parse it; `None` otherwise.
pub(crate) fn parse<I>(args: I) -> Option<Cli>
where
    I: IntoIterator<Item = OsString>,
{
    let mut json = false;
    let mut quiet = false;
    // `-v` counts before and after the command word: clap does not add
    // the two (the later level's count wins), so both is left to it.
    let mut verbose = [0u8; 2];
    let mut root: Option<PathBuf> = None;
    let mut config: Option<PathBuf> = None;
    let mut command: Option<Command> = None;
    // `conntrack`'s own flags, valid after its word only (clap's rule).
    let mut conntrack: Option<[bool; 2]> = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let arg = arg.into_string().ok()?;
        match arg.as_str() {
            // A flag given twice is clap's error to report.
            "--json" if !json => json = true,
            "-q" | "--quiet" if !quiet => quiet = true,
            "-v" | "--verbose" => {
                let level = usize::from(command.is_some() || conntrack.is_some());
                verbose[level] = verbose[level].checked_add(1)?;
            }
            "--root" if root.is_none() => root = Some(value(args.next()?)?),
            "--config" if config.is_none() => config = Some(value(args.next()?)?),
            "conntrack" if command.is_none() && conntrack.is_none() => conntrack = Some([false; 2]),
            "--per-cpu" | "--no-netlink" => {
                let flag = usize::from(arg == "--no-netlink");
                match &mut conntrack {
                    Some(flags) if !flags[flag] => flags[flag] = true,
                    _ => return None,
                }
            }
            "status" | "verify" | "boot" if command.is_none() && conntrack.is_none() => {
                command = Some(match arg.as_str() {
                    "status" => Command::Status,
                    "verify" => Command::Verify,
                    _ => Command::Boot(Default::default()),
                });
            }
            _ => {
                if let Some(v) = arg.strip_prefix("--root=")
                    && root.is_none()
                {
                    root = Some(value(v.to_string())?);
                } else if let Some(v) = arg.strip_prefix("--config=")
                    && config.is_none()
                {
                    config = Some(value(v.to_string())?);
                } else {
                    return None;
                }
            }
        }
    }
    let verbose = match verbose {
        [n, 0] | [0, n] => n,
        _ => return None,
    };
    // `-q` and `-v` conflict: clap says so.
    if quiet && verbose > 0 {
        return None;
    }
    if let Some([per_cpu, no_netlink]) = conntrack {
        command = Some(Command::Conntrack(super::conntrack::ConntrackArgs::show(
            per_cpu, no_netlink,
        )));
    }
    Some(Cli {
        json,
        quiet,
        verbose,
        root,
        config,
        command: command?,
    })
}

/// An option's value as clap takes it: not empty and not looking like an
/// option (clap refuses both; left to it).
fn value(v: impl Into<OsString>) -> Option<PathBuf> {
    let v: String = v.into().into_string().ok()?;
    if v.is_empty() || v.starts_with('-') {
        return None;
    }
    Some(PathBuf::from(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use proptest::prelude::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    /// clap's reading of `args`, as comparable text (`None`: an error, a
    /// help or a version request).
    fn clap_reading(args: &[&str]) -> Option<String> {
        let argv = std::iter::once("nfkit").chain(args.iter().copied());
        Cli::try_parse_from(argv).ok().map(|c| format!("{c:?}"))
    }

    fn fast_reading(args: &[&str]) -> Option<String> {
        parse(os(args)).map(|c| format!("{c:?}"))
    }

    const TOKENS: &[&str] = &[
        "status",
        "verify",
        "boot",
        "conntrack",
        "--per-cpu",
        "--no-netlink",
        "set",
        "plan",
        "apply",
        "tables",
        "help",
        "--json",
        "-q",
        "--quiet",
        "-v",
        "--verbose",
        "-vv",
        "-qv",
        "--root",
        "--root=/r",
        "--root=",
        "--config",
        "--config=/c.toml",
        "/tmp/x",
        "-x",
        "--",
        "--help",
        "-h",
        "--version",
        "-V",
        "",
        "=",
        "status=1",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Whenever the fast path answers, clap gives the same command line.
        #[test]
        fn agrees_with_clap(idx in proptest::collection::vec(0..TOKENS.len(), 0..7)) {
            let args: Vec<&str> = idx.iter().map(|&i| TOKENS[i]).collect();
            if let Some(fast) = fast_reading(&args) {
                prop_assert_eq!(Some(fast), clap_reading(&args), "args {:?}", args);
            }
        }
    }

    /// The forms the fast path exists for are taken by it (else it would
    /// save nothing), and equal clap's reading.
    #[test]
    fn the_common_forms_take_the_fast_path() {
        for args in [
            &["status"][..],
            &["status", "--json"],
            &["--json", "status"],
            &["-v", "status"],
            &["status", "-v", "-v"],
            &["-q", "verify"],
            &["verify", "--root", "/srv/img"],
            &["--root=/srv/img", "verify", "--json"],
            &["boot", "--config", "/etc/x.toml"],
            &["--quiet", "--config=/etc/x.toml", "boot"],
            &["conntrack"],
            &["--json", "conntrack", "--per-cpu"],
            &["conntrack", "--no-netlink", "-v", "--per-cpu"],
            &["-q", "conntrack", "--root", "/srv/img", "--no-netlink"],
        ] {
            let fast = fast_reading(args);
            assert!(fast.is_some(), "{args:?} not taken by the fast path");
            assert_eq!(fast, clap_reading(args), "{args:?}");
        }
    }

    /// Errors, help, version and everything else go to clap.
    #[test]
    fn the_rest_goes_to_clap() {
        for args in [
            &[][..],
            &["--json"],
            &["status", "verify"],
            &["status", "--json", "--json"],
            &["-q", "-v", "status"],
            &["status", "--help"],
            &["--version"],
            &["status", "--root"],
            &["status", "--root", "-x"],
            &["status", "--root="],
            &["apply"],
            &["status", "extra"],
            &["-vq", "status"],
            &["-v", "status", "-v"],
            &["--per-cpu", "conntrack"],
            &["conntrack", "--per-cpu", "--per-cpu"],
            &["conntrack", "set"],
            &["conntrack", "plan"],
            &["status", "--per-cpu"],
            &["conntrack", "status"],
        ] {
            assert_eq!(fast_reading(args), None, "{args:?}");
        }
    }

    #[test]
    fn non_utf8_goes_to_clap() {
        use std::os::unix::ffi::OsStringExt;
        let args = vec![
            OsString::from("status"),
            OsString::from("--root"),
            OsString::from_vec(vec![0x2f, 0xff]),
        ];
        assert!(parse(args).is_none());
    }
}
