//! `nfkit __confinement-test`: hidden, test-only entry points that exercise
//! the confinement from inside the binary (a filter or a ruleset cannot be
//! undone, so the tests cannot install them in their own process). Used by
//! tests/confinement.rs, vm-tests/scenarios/confine.sh and bench/host; not a
//! user command and not part of the stable interface.
//!
//! - `spawn`: calls the test's probe library (tests/support/spawn-probe.c,
//!   loaded with `LD_PRELOAD`: nfkit holds no code that starts a process),
//!   which tries every way of starting a program or a process (execve,
//!   execveat, fork, vfork, clone, clone3, glibc's posix spawn), then starts a
//!   thread; each refusal is reported as an error (exit 1).
//! - `wait`: prints `ready PID` and waits for stdin to close (so a test can
//!   read `/proc/PID/status` of a running nfkit).
//! - `write PATH -- COMMAND...`: enforces the Landlock policy of the nfkit
//!   command line COMMAND, then creates PATH.
//! - `timing -- COMMAND...`: the cost of installing the seccomp filter and
//!   of COMMAND's Landlock ruleset, in microseconds (for bench/host).

use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use clap::{Args, Parser as _, Subcommand};
use serde::Serialize;

use super::{Cli, EXIT_ERROR, EXIT_OK, Output};
use crate::persist::files::FileError;

/// `nfkit __confinement-test`.
#[derive(Debug, Args)]
pub struct SelftestArgs {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Try to start a program and processes (all must be refused) and a
    /// thread (must work).
    Spawn,
    /// Print `ready PID`, then wait until stdin is closed.
    Wait,
    /// Enforce COMMAND's write policy, then create PATH.
    Write {
        /// The file to create.
        path: PathBuf,
        /// An nfkit command line (without `nfkit`).
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Let libkmod itself run NAME's modprobe.d `install` command (a probe
    /// without nfkit's callback, under the read-only ruleset): the start of
    /// the command must fail.
    KmodInstall {
        /// Pass libkmod's IGNORE_COMMAND flag (`modprobe -i`): the module
        /// itself is inserted (finit_module), no command is considered.
        #[arg(long, short = 'i')]
        ignore_install: bool,
        /// The module (its real name).
        name: String,
    },
    /// Insert the `.ko` files PATH... on N worker threads of the parallel
    /// loader (one libkmod context each), under the read-only ruleset;
    /// prints the threads used and each file's errno.
    LoadThreads {
        /// Worker threads.
        #[arg(long, default_value = "2")]
        jobs: std::num::NonZeroUsize,
        /// `.ko` files (independent of each other).
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Time the seccomp filter's installation and COMMAND's ruleset.
    Timing {
        /// An nfkit command line (without `nfkit`).
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
}

/// A start refused (or allowed) where the confinement test expected it.
#[derive(Debug, thiserror::Error)]
pub enum SelftestError {
    /// The kernel refused to start a program or process.
    #[error("start a process with {call}")]
    Refused {
        call: String,
        #[source]
        source: std::io::Error,
    },
    /// A process or program was started: the filter is not in force.
    #[error("start a process with {call}: it started (no seccomp filter in force)")]
    Started { call: String },
    /// The probe library is not loaded.
    #[error("no spawn probe in this process (test-only: run with LD_PRELOAD=spawn-probe.so)")]
    NoProbe,
    /// Threads must keep working under the filter.
    #[error("start a thread")]
    Thread(#[source] std::io::Error),
}

impl crate::error::Hint for SelftestError {
    fn hint(&self) -> Option<std::borrow::Cow<'static, str>> {
        match self {
            SelftestError::Refused { .. } => Some(
                "nfkit's seccomp filter refuses every new program and process (see `nfkit status`)",
            ),
            SelftestError::Started { .. } => {
                Some("`nfkit status` says why the seccomp filter is not in force")
            }
            SelftestError::Thread(_) => None,
            SelftestError::NoProbe => Some(
                "build it with `cc -shared -fPIC -o spawn-probe.so tests/support/spawn-probe.c`",
            ),
        }
        .map(std::borrow::Cow::Borrowed)
    }
}

/// One attempt's outcome.
#[derive(Debug, Serialize)]
struct Attempt {
    call: String,
    /// `refused`, `started` or (thread) `ok`.
    outcome: &'static str,
    /// The errno's name when refused.
    errno: Option<String>,
}

#[derive(Debug, Serialize)]
struct SpawnReport {
    attempts: Vec<Attempt>,
}

fn errno_name(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EPERM) => "EPERM".into(),
        Some(libc::ENOSYS) => "ENOSYS".into(),
        Some(libc::EACCES) => "EACCES".into(),
        Some(n) => format!("errno {n}"),
        None => e.to_string(),
    }
}

/// What `nfkit_spawn_probe` fills in (tests/support/spawn-probe.c).
#[repr(C)]
struct ProbeAttempt {
    call: *const libc::c_char,
    /// 0: started; else the errno.
    err: libc::c_int,
}

type Probe = unsafe extern "C" fn(*mut ProbeAttempt, libc::c_int) -> libc::c_int;

/// Every way to start something, each tried once by the test's probe
/// library (loaded with `LD_PRELOAD`; nfkit holds no code that starts a
/// process). `Ok` = it started.
/// One attempt: the call and whether it started.
type Tried = (String, Result<(), std::io::Error>);

fn tries() -> Result<Vec<Tried>, SelftestError> {
    let this = libloading::os::unix::Library::this();
    // SAFETY: the symbol, when present, is tests/support/spawn-probe.c's
    // `int nfkit_spawn_probe(struct nfkit_attempt *, int)`, which `Probe`
    // matches.
    let probe =
        unsafe { this.get::<Probe>(b"nfkit_spawn_probe\0") }.map_err(|_| SelftestError::NoProbe)?;
    let mut attempts: Vec<ProbeAttempt> = (0..32)
        .map(|_| ProbeAttempt {
            call: std::ptr::null(),
            err: 0,
        })
        .collect();
    // SAFETY: `attempts` holds 32 writable entries, the count passed; the
    // probe fills at most that many with static strings.
    let n = unsafe { probe(attempts.as_mut_ptr(), 32) };
    let n = usize::try_from(n).unwrap_or(0).min(attempts.len());
    Ok(attempts[..n]
        .iter()
        .map(|a| {
            // SAFETY: the probe set `call` to a NUL-terminated static string.
            let call = unsafe { std::ffi::CStr::from_ptr(a.call) }
                .to_string_lossy()
                .into_owned();
            let result = match a.err {
                0 => Ok(()),
                e => Err(std::io::Error::from_raw_os_error(e)),
            };
            (call, result)
        })
        .collect())
}

fn spawn(output: Output) -> anyhow::Result<u8> {
    let mut attempts = Vec::new();
    let mut errors: Vec<SelftestError> = Vec::new();
    for (call, result) in tries()? {
        match result {
            Ok(()) => {
                attempts.push(Attempt {
                    call: call.clone(),
                    outcome: "started",
                    errno: None,
                });
                errors.push(SelftestError::Started { call });
            }
            Err(e) => {
                attempts.push(Attempt {
                    call: call.clone(),
                    outcome: "refused",
                    errno: Some(errno_name(&e)),
                });
                errors.push(SelftestError::Refused { call, source: e });
            }
        }
    }
    match std::thread::Builder::new().spawn(|| 7).map(|h| h.join()) {
        Ok(Ok(7)) => attempts.push(Attempt {
            call: "thread".into(),
            outcome: "ok",
            errno: None,
        }),
        Ok(_) => errors.push(SelftestError::Thread(std::io::Error::other(
            "thread failed",
        ))),
        Err(e) => errors.push(SelftestError::Thread(e)),
    }
    let mut text = String::new();
    for e in &errors {
        let o = crate::error::ErrorObject::of(e);
        text.push_str(&format!("nfkit: error: {}\n", o.message));
        if let Some(h) = o.hint {
            text.push_str(&format!("hint: {h}\n"));
        }
    }
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
    let report = SpawnReport { attempts };
    output.emit(&report, |out| {
        for a in &report.attempts {
            out.push_str(&format!(
                "{:<28} {}{}\n",
                a.call,
                a.outcome,
                a.errno
                    .as_deref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            ));
        }
    })?;
    Ok(if errors.is_empty() {
        EXIT_OK
    } else {
        EXIT_ERROR
    })
}

fn wait(output: Output) -> anyhow::Result<u8> {
    let line = format!("ready {}\n", nix::unistd::getpid());
    output.emit(&line, |out| out.push_str(&line))?;
    let mut sink = Vec::new();
    std::io::stdin().lock().read_to_end(&mut sink)?;
    Ok(EXIT_OK)
}

/// Parses COMMAND: its host, what it may write, its `--config`.
fn parse_as(command: &[String]) -> anyhow::Result<(Cli, crate::system::Host)> {
    let cli = Cli::try_parse_from(std::iter::once("nfkit".to_string()).chain(command.to_vec()))?;
    let host = super::host_for(&cli.root)?;
    Ok((cli, host))
}

/// Enforces the policy of a parsed command; returns the number of grants.
fn enforce(cli: &Cli, host: &crate::system::Host) -> anyhow::Result<usize> {
    let grants = super::command_grants(cli, host);
    let n = grants.len();
    crate::confine::restrict_writes(grants)?;
    Ok(n)
}

/// Parses COMMAND and enforces its policy; returns its command line shown.
fn enforce_as(command: &[String]) -> anyhow::Result<String> {
    let (cli, host) = parse_as(command)?;
    enforce(&cli, &host)?;
    Ok(command.join(" "))
}

fn write(path: PathBuf, command: &[String], output: Output) -> anyhow::Result<u8> {
    let shown = enforce_as(command)?;
    let result = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .and_then(|mut f| f.write_all(b"written under confinement\n"));
    if let Err(source) = result {
        let err = FileError::Io {
            op: "create",
            path,
            source,
        };
        return Err(anyhow::Error::new(err).context(format!("confinement test as `{shown}`")));
    }
    let line = format!("wrote {} as `{shown}`\n", path.display());
    output.emit(&line, |out| out.push_str(&line))?;
    Ok(EXIT_OK)
}

/// libkmod's own attempt to run an install command, and its result.
fn kmod_install(name: &str, ignore_install: bool, output: Output) -> anyhow::Result<u8> {
    use crate::modules::error::Op;
    crate::confine::restrict_writes(Vec::new())?;
    let host = crate::system::Host::live();
    let target = crate::modules::target::Target::new(&host, None, Op::Load)?;
    let ctx = target.context(Op::Load)?;
    let module = ctx.module(name)?;
    let flags = if ignore_install {
        crate::kmod::probe_flags::IGNORE_COMMAND
    } else {
        0
    };
    let result = module.probe_insert_letting_libkmod_run_commands(flags);
    let log: Vec<String> = ctx.take_log().iter().map(|l| l.to_string()).collect();
    let line = format!(
        "libkmod probe of {name} running its install command: {}\n",
        match &result {
            Ok(v) => format!("returned {v}"),
            Err(e) => format!("failed: {}", crate::error::message(e)),
        }
    );
    output.emit(&line, |out| {
        out.push_str(&line);
        for l in &log {
            out.push_str(&format!("libkmod: {l}\n"));
        }
    })?;
    result.context(format!("libkmod running the install command of {name}"))?;
    Ok(EXIT_OK)
}

#[derive(Serialize)]
struct LoadThreads {
    threads: usize,
    /// Per file: `inserted`, `already_loaded`, or the errno's name.
    results: Vec<String>,
}

fn load_threads(
    jobs: std::num::NonZeroUsize,
    paths: &[String],
    output: Output,
) -> anyhow::Result<u8> {
    crate::confine::restrict_writes(Vec::new())?;
    let dir = paths_dir(paths);
    let (threads, results) =
        crate::modules::load::insert_files(&dir, paths, crate::modules::Jobs::exactly(jobs));
    let report = LoadThreads {
        threads,
        results: results
            .iter()
            .map(|r| match r {
                Ok(false) => "inserted".to_owned(),
                Ok(true) => "already_loaded".to_owned(),
                Err(e) => e
                    .errno()
                    .map_or_else(|| crate::error::message(e), |n| format!("{n:?}")),
            })
            .collect(),
    };
    output.emit(&report, |out| {
        out.push_str(&format!("threads: {}\n", report.threads));
        for (p, r) in paths.iter().zip(&report.results) {
            out.push_str(&format!("{p}: {r}\n"));
        }
    })?;
    Ok(EXIT_OK)
}

/// The module directory for the worker contexts: the first file's
/// directory (they read nothing from it when inserting by path).
fn paths_dir(paths: &[String]) -> PathBuf {
    paths
        .first()
        .and_then(|p| std::path::Path::new(p).parent())
        .map_or_else(|| PathBuf::from("/"), std::path::Path::to_path_buf)
}

#[derive(Serialize)]
struct Timing {
    /// Assembling and installing the seccomp filter (a second copy).
    seccomp_us: f64,
    /// Computing the policy and enforcing the Landlock ruleset (after
    /// parsing, as in a real run).
    landlock_us: f64,
    /// Number of grants.
    grants: usize,
}

fn timing(command: &[String], output: Output) -> anyhow::Result<u8> {
    let (cli, host) = parse_as(command)?;
    let t0 = Instant::now();
    // The same work as at start-up (filters stack: a second copy).
    crate::confine::install_seccomp_again()?;
    let t1 = Instant::now();
    // What the CLI does after parsing: the policy, then the ruleset.
    let grants = enforce(&cli, &host)?;
    let t2 = Instant::now();
    let report = Timing {
        seccomp_us: (t1 - t0).as_secs_f64() * 1e6,
        landlock_us: (t2 - t1).as_secs_f64() * 1e6,
        grants,
    };
    output.emit(&report, |out| {
        out.push_str(&format!(
            "seccomp {:.1} us, landlock {:.1} us ({} grants)\n",
            report.seccomp_us, report.landlock_us, report.grants
        ));
    })?;
    Ok(EXIT_OK)
}

pub(super) fn run(args: SelftestArgs, output: Output) -> anyhow::Result<u8> {
    match args.action {
        Action::Spawn => spawn(output),
        Action::Wait => wait(output),
        Action::Write { path, command } => write(path, &command, output),
        Action::KmodInstall {
            name,
            ignore_install,
        } => kmod_install(&name, ignore_install, output),
        Action::Timing { command } => timing(&command, output),
        Action::LoadThreads { jobs, paths } => load_threads(jobs, &paths, output),
    }
}
