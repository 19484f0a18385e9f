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
    /// `nfkit conntrack [--per-cpu] [--no-netlink]`: the figures, no action
    /// (the start-up fast path's reading, see `fast_args`).
    pub(super) fn show(per_cpu: bool, no_netlink: bool) -> Self {
        Self {
            per_cpu,
            no_netlink,
            action: None,
        }
    }

    /// What this command may change.
    pub(super) fn writes(&self) -> crate::confine::policy::Writes {
        use crate::confine::policy::Writes;
        match &self.action {
            None | Some(ConntrackAction::Plan(_)) => Writes::NONE,
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
    /// What a maximum costs before setting it: memory (slab entry size +
    /// 8 bytes per bucket), the buckets that keep this kernel's default
    /// ratio, whether buckets can change at run time here, kube-proxy's
    /// formula. Writes nothing.
    Plan(PlanArgs),
}

#[derive(Debug, Args)]
struct PlanArgs {
    /// The maximum number of entries to plan for (1..=2147483647).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    max: String,
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
    /// Raise only: a limit already higher than asked is kept (as kube-proxy
    /// does); with --persist also recorded as [conntrack] never_lower.
    #[arg(long)]
    never_lower: bool,
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
                &mut crate::netlink::SharedSocket::default(),
            );
            output.emit(&status, |out| {
                render::conntrack(out, &status, args.per_cpu, output.verbose)
            })?;
            Ok(EXIT_OK)
        }
        Some(ConntrackAction::Set(set_args)) => run_set(host, config, set_args, output),
        Some(ConntrackAction::Plan(plan_args)) => {
            let max = limits::parse_max(&plan_args.max, false)?;
            let plan = ct::plan::plan(max.into(), &ct::plan::gather(host));
            output.emit(&plan, |out| render_plan(out, &plan))?;
            Ok(EXIT_OK)
        }
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
        never_lower: args.never_lower,
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
    if request.never_lower {
        edits.push(Edit::ConntrackNeverLower);
    }
    edits
}

fn bytes(n: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    format!("{:.1} MiB", n as f64 / MIB)
}

/// Text of `conntrack plan`.
fn render_plan(out: &mut String, plan: &ct::plan::Plan) {
    use ct::plan::BucketsChange;
    use std::fmt::Write as _;
    let size = &plan.entry_size;
    let _ = writeln!(out, "plan for max {}", plan.requested_max);
    let _ = writeln!(
        out,
        "  entry size          {} bytes ({})",
        size.value,
        size.source.label()
    );
    let row = |out: &mut String, label: &str, s: &ct::plan::Sizing| {
        let _ = writeln!(
            out,
            "  {label:<19} max {:>10}  buckets {:>10}  {:>5.2} per bucket  {}",
            s.max,
            s.buckets,
            s.ratio,
            bytes(s.memory_bytes)
        );
    };
    if let Some(c) = &plan.current {
        row(out, "now", c);
    }
    if let Some(c) = &plan.at_current_buckets {
        row(out, "on current buckets", c);
    }
    row(out, "suggested", &plan.suggested);
    if let Some(d) = &plan.kernel_default {
        let era = match d.era {
            ct::plan::SizingEra::Since5_15 => "since 5.15",
            ct::plan::SizingEra::Before5_15 => "before 5.15",
        };
        let _ = writeln!(
            out,
            "  kernel default      max {} on {} buckets ({} per bucket, {era}; 8 when hashsize= is given at load)",
            d.max, d.buckets, d.ratio
        );
    }
    match &plan.buckets_change {
        BucketsChange::RunTime { via } => {
            let _ = writeln!(out, "  buckets change      now, through {via}");
        }
        BucketsChange::NextLoad { why, how } => {
            let _ = writeln!(out, "  buckets change      not now: {why}; {how}");
        }
        BucketsChange::Unknown { why } => {
            let _ = writeln!(out, "  buckets change      unknown: {why}");
        }
    }
    if let Some(k) = &plan.kube_proxy {
        let _ = writeln!(
            out,
            "  kube-proxy          max({} x {} CPUs, {}) = {}{}",
            ct::plan::KUBE_PROXY_MAX_PER_CORE,
            k.cpus,
            ct::plan::KUBE_PROXY_MIN,
            k.max,
            if k.matches { " (matches)" } else { "" }
        );
    }
    for note in &plan.notes {
        let _ = writeln!(out, "  note: {note}");
    }
}
