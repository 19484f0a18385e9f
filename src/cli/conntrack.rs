//! `nfkit conntrack` and `nfkit conntrack set`.

use anyhow::Context as _;
use clap::{Args, Subcommand};

use super::{EXIT_OK, Output, render};
use crate::conntrack::limits::{self, Limit};
use crate::conntrack::set::{self, SetReport, SetRequest};
use crate::conntrack::{self as ct, ReadOptions};
use crate::system::Host;

/// `nfkit conntrack`.
#[derive(Debug, Args)]
pub struct ConntrackArgs {
    /// Show counters per CPU as well as summed.
    #[arg(long)]
    per_cpu: bool,
    /// Read files only (/proc/sys, /proc/net/stat), never netlink.
    #[arg(long)]
    no_netlink: bool,
    #[command(subcommand)]
    action: Option<ConntrackAction>,
}

impl ConntrackArgs {
    /// What this command may change.
    pub(super) fn writes(&self) -> crate::confine::policy::Writes {
        use crate::confine::policy::Writes;
        match &self.action {
            None => Writes::NONE,
            Some(ConntrackAction::Set(a)) if a.dry_run => Writes::NONE,
            Some(ConntrackAction::Set(a)) if a.persist => Writes::PERSIST,
            Some(ConntrackAction::Set(_)) => Writes::RUNTIME,
        }
    }
}

#[derive(Debug, Subcommand)]
enum ConntrackAction {
    /// Set conntrack limits through sysctl (initial network namespace only).
    ///
    /// Settings may also be given as KEY=VALUE with sysctl names, including
    /// the legacy net.nf_conntrack_max (same kernel variable as
    /// net.netfilter.nf_conntrack_max).
    Set(SetArgs),
}

#[derive(Debug, Args)]
struct SetArgs {
    /// New maximum number of entries (1..=2147483647; 0 = no limit, needs
    /// --allow-unlimited).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    max: Option<String>,
    /// New number of hash buckets (rounded up to a multiple of 512).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    buckets: Option<String>,
    /// Allow --max 0 (no limit at all).
    #[arg(long)]
    allow_unlimited: bool,
    /// Show what would change; write nothing.
    #[arg(long, short = 'n')]
    dry_run: bool,
    /// Also record the values in nfkit.toml and write the persistent files
    /// (sysctl.d, modprobe.d hashsize), so they survive a reboot.
    #[arg(long)]
    persist: bool,
    /// Settings as KEY=VALUE (e.g. net.nf_conntrack_max=500000).
    #[arg(value_name = "KEY=VALUE")]
    settings: Vec<String>,
}

pub(super) fn run(
    host: &Host,
    config: &Option<std::path::PathBuf>,
    args: ConntrackArgs,
    output: Output,
) -> anyhow::Result<u8> {
    match args.action {
        None => {
            let status = ct::read_status(
                host,
                ReadOptions {
                    files_only: args.no_netlink,
                },
            );
            output.emit(&status, |out| {
                render::conntrack(out, &status, args.per_cpu, output.verbose)
            })?;
            Ok(EXIT_OK)
        }
        Some(ConntrackAction::Set(set_args)) => run_set(host, config, set_args, output),
    }
}

/// Builds the request from flags and KEY=VALUE settings; a limit given twice
/// with different values is an error.
fn build_request(args: &SetArgs) -> anyhow::Result<SetRequest> {
    let mut max = args.max.clone();
    let mut buckets = args.buckets.clone();
    for setting in &args.settings {
        let (key, value) = setting
            .split_once('=')
            .with_context(|| format!("set conntrack limits: {setting:?} is not KEY=VALUE"))?;
        let slot = match limits::limit_for_key(key) {
            Some(Limit::Max) => &mut max,
            Some(Limit::Buckets) => &mut buckets,
            None => anyhow::bail!(
                "set conntrack limits: unknown setting {key:?} (known: max, buckets, \
                 net.netfilter.nf_conntrack_max, net.nf_conntrack_max, \
                 net.netfilter.nf_conntrack_buckets)"
            ),
        };
        if let Some(previous) = slot
            && previous.trim() != value.trim()
        {
            anyhow::bail!("set conntrack limits: {key} given twice ({previous} and {value})");
        }
        *slot = Some(value.to_string());
    }
    Ok(SetRequest {
        max: max
            .as_deref()
            .map(|v| limits::parse_max(v, args.allow_unlimited))
            .transpose()?,
        buckets: buckets.as_deref().map(limits::parse_buckets).transpose()?,
    })
}

fn run_set(
    host: &Host,
    config: &Option<std::path::PathBuf>,
    args: SetArgs,
    output: Output,
) -> anyhow::Result<u8> {
    let request = build_request(&args)?;
    if args.persist && host.offline {
        // Offline: only the persistent files of the image change.
        let (persisted, code) =
            super::state::persist(host, config, &persist_edits(request), args.dry_run)?;
        super::state::emit_with_persist::<SetReport>(output, None, |_| {}, &persisted)?;
        return Ok(code);
    }
    let report = set::set_limits(host, request, args.dry_run)?;
    if !args.persist {
        output.emit(&report, |out| render::set_report(out, &report))?;
        return Ok(EXIT_OK);
    }
    let (persisted, code) =
        super::state::persist(host, config, &persist_edits(request), args.dry_run)?;
    super::state::emit_with_persist(
        output,
        Some(&report),
        |out| render::set_report(out, &report),
        &persisted,
    )?;
    Ok(code)
}

fn persist_edits(request: SetRequest) -> Vec<crate::persist::edit::Edit> {
    use crate::persist::edit::Edit;
    let mut edits = Vec::new();
    if let Some(max) = request.max {
        edits.push(Edit::ConntrackMax(max));
    }
    if let Some(buckets) = request.buckets {
        edits.push(Edit::ConntrackBuckets(buckets));
    }
    edits
}
