//! Command-line interface: clap definitions, dispatch, error reporting and
//! exit codes. Rendering lives in [`render`]; each command's logic lives in
//! the library modules.
//!
//! Exit codes (stable, documented in the README):
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | error (the message names the operation, the object and the cause) |
//! | 2 | usage error (bad flags or arguments) |
//! | 3 | the state differs from what was asked (`--check`, `verify`) |

mod completions;
mod conntrack;
mod containment;
mod explain;
mod fast_args;
mod manpages;
mod metrics;
mod modules;
mod packaging;
mod render;
mod selftest;
mod state;
mod status;
mod tables;

pub use state::load_desired;

use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use serde::Serialize;

use crate::confine::policy::{self, Writes};
use crate::system::Host;

#[cfg(test)]
pub(crate) use manpages::NFKIT_TOML_5;
pub use packaging::GenError;
pub use selftest::SelftestError;

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: an operation failed.
pub const EXIT_ERROR: u8 = 1;
/// Exit code: bad command line.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: the state differs from what was asked (check/verify).
pub const EXIT_DIFFERS: u8 = 3;

/// nfkit: set up a Linux host's netfilter layer natively (modules, conntrack
/// limits, tables) without running any other program.
#[derive(Debug, Parser)]
#[command(name = "nfkit", version, about, propagate_version = true)]
pub struct Cli {
    /// Print machine-readable JSON on stdout (schema in the README).
    #[arg(long, global = true)]
    pub json: bool,
    /// Print nothing but errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Print more detail (sources of each figure, notes).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Work offline on the file tree under DIR (DIR/proc, DIR/sys, DIR/etc,
    /// DIR/lib/modules); the running kernel is not used.
    #[arg(long, global = true, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// The desired-state file (default: /etc/nfkit/nfkit.toml, under --root
    /// when given).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// One view of kernel, module support, conntrack and tables.
    Status,
    /// Conntrack entries, limits and counters; `set` changes limits.
    Conntrack(conntrack::ConntrackArgs),
    /// Netfilter table names per family; `show TABLE` lists its chains.
    Tables(tables::TablesArgs),
    /// Conntrack, module and drift figures in the Prometheus text format
    /// (node_exporter-compatible names plus nfkit's own).
    Metrics(metrics::MetricsArgs),
    /// Kernel modules through libkmod: list, resolve, load, unload
    /// (modprobe semantics; never runs modprobe or any command).
    Modules(modules::ModulesArgs),
    /// Why each module will or will not load: what it resolves to, every
    /// reason with its evidence; exit 0 when it is there or would load.
    Explain(explain::ExplainArgs),
    /// Converge the running kernel and the persistent files to nfkit.toml.
    Apply(state::ApplyArgs),
    /// Desired vs running kernel vs next boot; exit 3 when they differ.
    Verify,
    /// Print an nfkit.toml from existing configuration (iptables-config,
    /// modprobe.d, /etc/modules, modules-load.d, sysctl), translating legacy names.
    Import(state::ImportArgs),
    /// Apply the persisted state at boot (hosts without systemd): modules
    /// with options first, then the conntrack sysctls.
    Boot(state::BootArgs),
    /// Test-only entry points of the confinement (hidden; used by the tests
    /// through the binary, see `cli::selftest`). Not a user command.
    #[command(name = "__confinement-test", hide = true)]
    ConfinementTest(selftest::SelftestArgs),
    /// Man pages and completion scripts on stdout, for packagers (hidden;
    /// see `cli::packaging`). Not a user command.
    #[command(name = "__gen", hide = true)]
    Gen(packaging::GenArgs),
    /// Module names of the running kernel's tree starting with PREFIX, for
    /// the completion scripts (hidden). Not a user command.
    #[command(name = "__complete-modules", hide = true)]
    CompleteModules(packaging::CompleteModulesArgs),
}

impl Command {
    /// What this command may change (its Landlock policy's input).
    pub(crate) fn writes(&self) -> Writes {
        match self {
            Command::Status
            | Command::Tables(_)
            | Command::Verify
            | Command::Import(_)
            | Command::Metrics(_)
            | Command::Explain(_)
            | Command::Gen(_)
            | Command::CompleteModules(_) => Writes::NONE,
            Command::Conntrack(args) => args.writes(),
            Command::Modules(args) => args.writes(),
            Command::Apply(args) => args.writes(),
            Command::Boot(_) => Writes::RUNTIME,
            // Enforces the policy of the command it is given itself.
            Command::ConfinementTest(_) => Writes::NONE,
        }
    }

    /// A directory this command writes a file in that is not one of
    /// nfkit's persistent targets (`metrics --textfile`).
    pub(crate) fn output_dir(&self) -> Option<PathBuf> {
        match self {
            Command::Metrics(args) => args.textfile_dir(),
            _ => None,
        }
    }
}

/// The JSON report buffer allocated up front (bytes).
const JSON_REPORT_CAPACITY: usize = 16 * 1024;

/// Output settings shared by all commands.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    /// JSON instead of text.
    pub json: bool,
    /// Only errors.
    pub quiet: bool,
    /// Verbosity level.
    pub verbose: u8,
}

impl Output {
    /// Prints `report` as JSON, or the text `human` renders, to stdout.
    pub fn emit<T: Serialize>(
        &self,
        report: &T,
        human: impl FnOnce(&mut String),
    ) -> anyhow::Result<()> {
        if self.json {
            // Serialised straight into a buffer sized for a typical report
            // (status is ~4 KiB, a verify report with every item ~10 KiB):
            // no regrowth and copy while the report is written.
            let mut bytes = Vec::with_capacity(JSON_REPORT_CAPACITY);
            serde_json::to_writer_pretty(&mut bytes, report)?;
            bytes.push(b'\n');
            return write_stdout(bytes);
        }
        let mut text = String::new();
        if !self.quiet {
            human(&mut text);
        }
        write_stdout(text)
    }

    /// Reports runtime items that were refused or failed on stderr, one
    /// `nfkit: error:` line (and a `hint:` line) each, in every mode: with
    /// `-q`, and with `--json` too (where the report also lists them under
    /// `failures`).
    pub fn failures(&self, failures: &[crate::persist::runtime::RuntimeFailure]) {
        let mut text = String::new();
        for f in failures {
            let Some(error) = f.error() else { continue };
            let _ = writeln!(
                text,
                "nfkit: error: {} stays {} (wanted {}), {}: {}",
                f.change.item,
                f.change.before,
                f.change.after,
                f.outcome_text(),
                error.message
            );
            if let Some(h) = &error.hint {
                let _ = writeln!(text, "hint: {h}");
            }
        }
        if !text.is_empty() {
            let _ = std::io::stderr().lock().write_all(text.as_bytes());
        }
    }

    /// Prints notes (`nfkit: note: LINE`) on stderr, for the text output
    /// only: with `--json` they are fields of the report, with `-q` silent.
    pub fn notes<S: AsRef<str>>(&self, lines: impl IntoIterator<Item = S>) {
        if self.json || self.quiet {
            return;
        }
        let mut text = String::new();
        for line in lines {
            let _ = writeln!(text, "nfkit: note: {}", line.as_ref());
        }
        if !text.is_empty() {
            let _ = std::io::stderr().lock().write_all(text.as_bytes());
        }
    }
}

fn write_stdout(bytes: impl AsRef<[u8]>) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes.as_ref()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        // A closed pipe (`nfkit ... | head`) is not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(anyhow::Error::new(e).context("write the report to stdout")),
    }
}

/// Parses the command line, runs the command and returns the exit code.
pub fn main() -> u8 {
    // Ansible runs the collection's copies of this binary as its modules.
    if let Some(module) = crate::ansible::invoked_as() {
        return crate::ansible::main(module);
    }
    // `status`, `verify`, `boot` with plain global options skip building
    // clap's whole command tree (see fast_args); clap parses the rest.
    let cli = match fast_args::parse(std::env::args_os().skip(1)) {
        Some(cli) => cli,
        None => match Cli::try_parse() {
            Ok(cli) => cli,
            Err(e) => {
                let _ = e.print();
                return if e.use_stderr() { EXIT_USAGE } else { EXIT_OK };
            }
        },
    };
    let output = Output {
        json: cli.json,
        quiet: cli.quiet,
        verbose: cli.verbose,
    };
    match run(cli, output) {
        Ok(code) => code,
        Err(err) => {
            report_error(&err, output);
            EXIT_ERROR
        }
    }
}

fn host_for(root: &Option<PathBuf>) -> Result<Host, crate::system::RootError> {
    match root {
        Some(dir) => Host::offline_checked(dir),
        None => Ok(Host::live()),
    }
}

/// Restricts this process's writes to what `cli`'s command may change
/// (Landlock; see [`crate::confine`]).
fn confine(cli: &Cli, host: &Host) -> Result<(), crate::confine::ConfineError> {
    crate::confine::restrict_writes(command_grants(cli, host))
}

/// The Landlock grants of `cli`'s command: its persistent and runtime
/// writes, and the directory of an output file it was given.
pub(crate) fn command_grants(cli: &Cli, host: &Host) -> Vec<policy::Grant> {
    let mut grants = policy::grants(cli.command.writes(), host, &cli.config);
    grants.extend(
        cli.command
            .output_dir()
            .and_then(|d| policy::output_grant(&d)),
    );
    policy::merge(grants)
}

fn run(cli: Cli, output: Output) -> anyhow::Result<u8> {
    let host = host_for(&cli.root)?;
    if let Command::ConfinementTest(args) = cli.command {
        return selftest::run(args, output);
    }
    confine(&cli, &host)?;
    if output.verbose > 0 {
        output.notes(crate::confine::notes());
    }
    match cli.command {
        Command::Status => status::run(&host, output),
        Command::Conntrack(args) => conntrack::run(&host, &cli.config, args, output),
        Command::Tables(args) => tables::run(&host, args, output),
        Command::Metrics(args) => metrics::run(&host, &cli.config, args, output),
        Command::Modules(args) => modules::run(&host, &cli.config, args, output),
        Command::Explain(args) => explain::run(&host, args, output),
        Command::Apply(args) => state::run_apply(&host, &cli.config, args, output),
        Command::Verify => state::run_verify(&host, &cli.config, output),
        Command::Import(args) => state::run_import(&host, args, output),
        Command::Boot(args) => state::run_boot(&host, &cli.config, args, output),
        Command::Gen(args) => packaging::run_gen(args),
        Command::CompleteModules(args) => packaging::run_complete_modules(&host, args),
        Command::ConfinementTest(_) => unreachable!("handled above"),
    }
}

/// The hint of the outermost layer of the chain that has one (see
/// [`crate::error`]: the registry of error types is kept there).
pub fn hint_for(err: &anyhow::Error) -> Option<String> {
    crate::error::hint_anyhow(err)
}

#[derive(Serialize)]
struct JsonError {
    error: crate::error::ErrorObject,
}

/// Prints the error once: the chain on one `nfkit: error:` line, each cause
/// once, then the hint; with `--json` also the error object on stdout.
fn report_error(err: &anyhow::Error, output: Output) {
    let error = crate::error::ErrorObject::of_anyhow(err);
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "nfkit: error: {}", error.message);
    if let Some(h) = &error.hint {
        let _ = writeln!(stderr, "hint: {h}");
    }
    drop(stderr);
    if output.json {
        if let Ok(text) = serde_json::to_string_pretty(&JsonError { error }) {
            let _ = write_stdout(&(text + "\n"));
        }
    }
}
