//! `nfkit explain MODULE...`: why each module will or will not load.

use std::fmt::Write as _;

use clap::Args;

use super::{EXIT_ERROR, EXIT_OK, Output};
use crate::conntrack::{helper_read, helpers};
use crate::modules::{self, ExplainReport, Explained, ReasonReport};
use crate::system::Host;

/// `nfkit explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Use the modules of kernel release R (DIR/lib/modules/R) instead of
    /// the running kernel's (or, with --root, the only release there).
    #[arg(long, value_name = "R")]
    kernel_release: Option<String>,
    /// Module names or aliases.
    #[arg(required = true, value_name = "MODULE")]
    names: Vec<String>,
}

/// Attaches the conntrack-helper assessment to helper modules (the
/// assignments are read once, only when a helper module is asked about).
fn add_helpers(host: &Host, report: &mut ExplainReport) {
    let is_helper = |r: &Explained| {
        helpers::helper_names(&r.name).is_some()
            || r.modules
                .iter()
                .any(|m| helpers::helper_names(&m.module).is_some())
    };
    if !report.results.iter().any(is_helper) {
        return;
    }
    let assignments = helper_read::read_assignments(host);
    for r in &mut report.results {
        let module = r
            .modules
            .iter()
            .map(|m| m.module.as_str())
            .find(|m| helpers::helper_names(m).is_some())
            .unwrap_or(&r.name)
            .to_owned();
        r.helper = helpers::assess(&module, &assignments);
    }
}

fn reason_lines(out: &mut String, reasons: &[ReasonReport]) {
    for r in reasons {
        let mark = match r.effect {
            modules::explain::Effect::Note => "note",
            modules::explain::Effect::Satisfied => "ok",
            modules::explain::Effect::Blocks => "blocks",
            modules::explain::Effect::Host => "host",
            modules::explain::Effect::Unavailable => "missing",
        };
        let _ = writeln!(out, "  [{mark}] {}", r.message);
    }
}

/// Text form.
pub fn render(report: &ExplainReport, out: &mut String) {
    let t = &report.target;
    if report.offline {
        let _ = writeln!(
            out,
            "kernel {} in {} (offline: loaded state, modules_disabled, lockdown, signature enforcement and capabilities are not checked)",
            t.release,
            t.root.display()
        );
    }
    if let Some(note) = &report.kernel_config.note {
        let _ = writeln!(out, "kernel config: {note}");
    }
    for r in &report.results {
        let targets: Vec<&str> = r.modules.iter().map(|m| m.module.as_str()).collect();
        if targets.is_empty() {
            let _ = writeln!(out, "{}: {}", r.name, r.outcome.describe());
        } else {
            let _ = writeln!(
                out,
                "{} -> {}: {}",
                r.name,
                targets.join(" "),
                r.outcome.describe()
            );
        }
        reason_lines(out, &r.reasons);
        for m in &r.modules {
            if r.modules.len() > 1 {
                let _ = writeln!(out, " {}: {}", m.module, m.outcome.describe());
            }
            reason_lines(out, &m.reasons);
        }
        if let Some(l) = &r.legacy {
            let _ = writeln!(out, "  note: {l}");
        }
        if !r.suggestions.is_empty() {
            let _ = writeln!(out, "  did you mean: {}", r.suggestions.join(", "));
        }
        if let Some(h) = &r.helper {
            if let Some(w) = &h.warning {
                let _ = writeln!(out, "  warning: {w}");
                let _ = writeln!(out, "  fix: {}", h.fix);
            } else {
                for a in &h.assigned_by {
                    let _ = writeln!(out, "  helper assigned by {a}");
                }
            }
        }
    }
}

/// Runs `nfkit explain`: exit 0 when every name is already satisfied or
/// would load, 1 otherwise.
pub fn run(host: &Host, args: ExplainArgs, output: Output) -> anyhow::Result<u8> {
    let mut report = modules::explain(host, args.kernel_release.as_deref(), &args.names)?;
    add_helpers(host, &mut report);
    output.emit(&report, |out| render(&report, out))?;
    Ok(if report.ok() { EXIT_OK } else { EXIT_ERROR })
}
