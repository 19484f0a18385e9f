//! `nfkit metrics`: the Prometheus text format on stdout, or atomically into
//! a node_exporter textfile-collector file.

use std::path::{Path, PathBuf};

use clap::Args;

use super::{EXIT_OK, Output};
use crate::conntrack::{self as ct, ReadOptions};
use crate::metrics::{self, MetricsReport, ModuleGauge, VerifyGauge, netns, textfile};
use crate::modules::{self, ModState};
use crate::persist::desired::Desired;
use crate::persist::{files, record, verify};
use crate::system::Host;

/// `nfkit metrics`.
#[derive(Debug, Args)]
pub struct MetricsArgs {
    /// Write the metrics to PATH (atomically: temporary file in the same
    /// directory, then rename) instead of stdout, for node_exporter's
    /// textfile collector (PATH should end in .prom).
    #[arg(long, value_name = "PATH")]
    textfile: Option<PathBuf>,
    /// Also count conntrack entries in every network namespace found in
    /// /run/netns and /proc/*/ns/net (entered with setns).
    #[arg(long)]
    all_netns: bool,
}

impl MetricsArgs {
    /// The directory `--textfile` writes in (its Landlock grant).
    pub(super) fn textfile_dir(&self) -> Option<PathBuf> {
        self.textfile.as_deref().map(textfile::directory_of)
    }
}

/// The desired state's drift, or why it is not known.
fn verify_gauge(host: &Host, config: &Option<PathBuf>) -> VerifyGauge {
    let file = record::config_file(host, config.as_deref());
    let failed = |e: &(dyn std::error::Error + 'static)| VerifyGauge::Failed {
        error: crate::error::ErrorObject::of(e),
    };
    let text = match files::read_toml_under(&file.root, &file.path) {
        Ok(Some(text)) => text,
        Ok(None) => return VerifyGauge::NoDesiredState,
        Err(e) => return failed(&e),
    };
    let desired = match Desired::parse(&file.shown, &text) {
        Ok(d) => d,
        Err(e) => return failed(&e),
    };
    match verify::verify(host, &desired) {
        Ok(report) => VerifyGauge::Verified {
            ok: report.ok,
            differing: report.rows.iter().filter(|r| !r.ok).count(),
            rows: report.rows.len(),
            problems: report.problems.len(),
        },
        Err(e) => failed(&e),
    }
}

/// Netfilter modules in the kernel, plus the desired ones that are not.
fn module_gauges(
    host: &Host,
    config: &Option<PathBuf>,
    notes: &mut Vec<String>,
) -> Vec<ModuleGauge> {
    let mut out: Vec<ModuleGauge> = match modules::list(host, false) {
        Ok(list) => list
            .modules
            .into_iter()
            .map(|m| ModuleGauge {
                module: m.name,
                state: m.state,
            })
            .collect(),
        Err(e) => {
            notes.push(crate::error::message(&e));
            Vec::new()
        }
    };
    let file = record::config_file(host, config.as_deref());
    if let Ok(Some(text)) = files::read_toml_under(&file.root, &file.path)
        && let Ok(desired) = Desired::parse(&file.shown, &text)
    {
        for name in desired.load_list() {
            let name = name.to_string();
            if !out.iter().any(|m| m.module == name) {
                out.push(ModuleGauge {
                    module: name,
                    state: ModState::NotLoaded,
                });
            }
        }
    }
    out.sort_by(|a, b| a.module.cmp(&b.module));
    out
}

/// Gathers the report.
fn gather(
    host: &Host,
    config: &Option<PathBuf>,
    args: &MetricsArgs,
) -> (MetricsReport, Vec<String>) {
    let mut notes = Vec::new();
    let conntrack = ct::read_status(
        host,
        ReadOptions::default(),
        &mut crate::netlink::SharedSocket::default(),
    );
    notes.extend(conntrack.notes.iter().cloned());
    let namespaces = if args.all_netns {
        if host.offline {
            notes.push("--all-netns: namespaces are not entered with --root".into());
            None
        } else {
            Some(netns::count_all(host))
        }
    } else {
        None
    };
    let modules = module_gauges(host, config, &mut notes);
    let report = MetricsReport {
        conntrack,
        namespaces,
        modules,
        verify: verify_gauge(host, config),
    };
    (report, notes)
}

pub(super) fn run(
    host: &Host,
    config: &Option<PathBuf>,
    args: MetricsArgs,
    output: Output,
) -> anyhow::Result<u8> {
    let (report, notes) = gather(host, config, &args);
    let text = metrics::exposition(&report);
    if output.verbose > 0 {
        output.notes(&notes);
    }
    match &args.textfile {
        Some(path) => {
            textfile::write_atomic(Path::new(path), &text)?;
            output.emit(&report, |out| {
                if output.verbose > 0 {
                    out.push_str(&format!("wrote {}\n", path.display()));
                }
            })?;
        }
        None => output.emit(&report, |out| out.push_str(&text))?,
    }
    Ok(EXIT_OK)
}
