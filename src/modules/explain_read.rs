//! `nfkit explain`: reads the facts (module tree through libkmod, modprobe.d
//! lines, the running kernel's files) and hands them to the pure rules in
//! [`super::explain`].

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::error::{ModuleError, Op};
use super::explain::{
    self as rules, ConfLine, ConfigHit, KernelFacts, ModuleFacts, Outcome, Reason,
};
use super::name::ModuleName;
use super::target::{KmodLog, Target, lookup};
use super::{legacy, sysfs};
use crate::kmod::{InitState, Module};
use crate::persist::modprobe_d::{self, Directive, Located};
use crate::read::Kind;
use crate::system::Host;

/// One reason as reported: the reason, its effect and its text.
#[derive(Debug, Clone, Serialize)]
pub struct ReasonReport {
    /// The reason and its evidence.
    #[serde(flatten)]
    pub reason: Reason,
    /// What it does to a load.
    pub effect: rules::Effect,
    /// One line of text.
    pub message: String,
}

/// One real module a name resolves to.
#[derive(Debug, Clone, Serialize)]
pub struct ExplainedModule {
    /// Module name.
    pub module: String,
    /// The name given was an alias of it.
    pub via_alias: bool,
    /// Module file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Whether the module file is signed (none: no file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<rules::Signature>,
    /// modinfo `vermagic`'s release.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vermagic: Option<String>,
    /// This module's outcome.
    pub outcome: Outcome,
    /// Every reason that applies.
    pub reasons: Vec<ReasonReport>,
}

/// One name.
#[derive(Debug, Clone, Serialize)]
pub struct Explained {
    /// The name as given.
    pub name: String,
    /// The outcome of a load of this name.
    pub outcome: Outcome,
    /// `outcome` is already satisfied or would load.
    pub ok: bool,
    /// The modules it resolves to (empty when not found).
    pub modules: Vec<ExplainedModule>,
    /// Reasons about the name itself (not in the tree).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<ReasonReport>,
    /// A note when the name is a known old name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub legacy: Option<String>,
    /// Closest module names, when nothing was found.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub suggestions: Vec<String>,
    /// Conntrack helper assignment, for helper modules (filled by the CLI).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub helper: Option<crate::conntrack::helpers::HelperAssessment>,
}

/// Where the kernel config came from.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigSource {
    /// The file read (`/boot/config-<release>` or `/proc/config.gz`), when
    /// there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// Why no file, or what was not read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl ConfigSource {
    fn file(file: PathBuf) -> Self {
        ConfigSource {
            file: Some(file),
            note: None,
        }
    }

    fn note(note: String) -> Self {
        ConfigSource {
            file: None,
            note: Some(note),
        }
    }
}

/// `nfkit explain` result.
#[derive(Debug, Clone, Serialize)]
pub struct ExplainReport {
    /// The module tree used.
    pub target: Target,
    /// True when running-kernel facts were not used (`--root`, or another
    /// release than the running one).
    pub offline: bool,
    /// Whether `lib/modules/<release>` exists.
    pub module_dir_exists: bool,
    /// The running kernel's facts (all null offline).
    pub kernel: KernelFacts,
    /// The kernel config source.
    pub kernel_config: ConfigSource,
    /// One entry per name.
    pub results: Vec<Explained>,
}

impl ExplainReport {
    /// Every name is already satisfied or would load.
    pub fn ok(&self) -> bool {
        self.results.iter().all(|r| r.ok)
    }
}

fn report(reason: Reason, module: &str) -> ReasonReport {
    ReasonReport {
        effect: reason.effect(),
        message: reason.message(module),
        reason,
    }
}

fn read_value(host: &Host, path: &Path) -> Option<String> {
    host.read(path, Kind::KernelValue)
        .ok()
        .flatten()
        .map(|s| s.trim().to_owned())
}

/// The running kernel's facts.
fn kernel_facts(host: &Host) -> KernelFacts {
    let cap = read_value(host, &host.proc("self/status")).and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
    });
    let uid_map = read_value(host, &host.proc("self/uid_map"));
    let (cmd_kernel, cmd_modprobe) = read_value(host, &host.proc("cmdline"))
        .map(|c| rules::cmdline_blacklists(&c))
        .unwrap_or_default();
    KernelFacts {
        module_support: Some(host.has_module_support()),
        modules_disabled: read_value(host, &host.proc("sys/kernel/modules_disabled"))
            .map(|v| v == "1"),
        lockdown: read_value(host, &host.sys("kernel/security/lockdown"))
            .and_then(|t| rules::lockdown_mode(&t)),
        sig_enforce: read_value(host, &host.sys("module/module/parameters/sig_enforce"))
            .map(|v| v == "Y" || v == "1"),
        cap_sys_module: cap.map(|c| c & (1 << 16) != 0),
        initial_user_namespace: uid_map.as_deref().map(rules::is_initial_uid_map),
        uid_map: uid_map.map(|m| m.split_ascii_whitespace().collect::<Vec<_>>().join(" ")),
        cmdline_module_blacklist: cmd_kernel,
        cmdline_modprobe_blacklist: cmd_modprobe,
    }
}

/// The kernel config text and where it came from: `/boot/config-<release>`
/// (under the root), else, for the running kernel, `/proc/config.gz`
/// (`CONFIG_IKCONFIG_PROC`, gzip). A file that cannot be read is named in
/// the note, never an error: the config only adds a note to the reasons.
fn kernel_config(host: &Host, t: &Target) -> (Option<String>, ConfigSource) {
    let shown = PathBuf::from(format!("/boot/config-{}", t.release));
    let boot = crate::read::read_text(&host.root, &shown, Kind::Config);
    if let Ok(Some(text)) = boot {
        return (Some(text), ConfigSource::file(shown));
    }
    let boot_note = match boot {
        Err(e) => format!(
            "{} not read: {}",
            shown.display(),
            crate::error::message(&e)
        ),
        _ => format!("{} is absent", shown.display()),
    };
    if !t.live {
        return (None, ConfigSource::note(boot_note));
    }
    match host.read_gzip(&host.proc("config.gz"), Kind::Config) {
        Ok(Some(text)) => (
            Some(text),
            ConfigSource::file(PathBuf::from("/proc/config.gz")),
        ),
        Ok(None) => (
            None,
            ConfigSource::note(format!("{boot_note} (and no /proc/config.gz)")),
        ),
        Err(e) => (
            None,
            ConfigSource::note(format!(
                "{boot_note}; /proc/config.gz not read: {}",
                crate::error::message(&e)
            )),
        ),
    }
}

/// The last bytes of a file (for the signature mark).
fn file_tail(path: &str) -> Option<Vec<u8>> {
    let mut f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    let n = rules::SIGNATURE_TAIL as u64;
    f.seek(SeekFrom::Start(len.saturating_sub(n))).ok()?;
    let mut buf = Vec::new();
    f.take(n).read_to_end(&mut buf).ok()?;
    Some(buf)
}

/// modprobe.d directives in libkmod's order (refused files are skipped:
/// libkmod's own reading already refused them in `Target::context`).
fn modprobe_lines(root: &Path) -> Vec<Located> {
    let (files, _refused) =
        crate::persist::plan::scan_conf_dirs(root, &crate::persist::nextboot::MODPROBE_DIRS);
    files
        .iter()
        .flat_map(|f| modprobe_d::parse(&f.path, &f.text).0)
        .collect()
}

fn module_facts(t: &Target, m: &Module<'_>, given: &str, lines: &[Located]) -> ModuleFacts {
    let module = m.name();
    let path = m.path();
    let builtin = match m.initstate() {
        Ok(InitState::Builtin) => Some(format!("modules.builtin of {}", t.release)),
        _ if t.live
            && sysfs::read_sys_module(&t.sys_root, &module)
                .is_some_and(|s| s.initstate.is_none()) =>
        {
            Some(format!("/sys/module/{module} has no initstate"))
        }
        _ => None,
    };
    let loaded = if t.live && builtin.is_none() {
        sysfs::read_sys_module(&t.sys_root, &module).and_then(|s| s.initstate)
    } else {
        None
    };
    let at = |l: &Located| ConfLine {
        file: l.file.clone(),
        line: l.line,
    };
    let blacklist = lines
        .iter()
        .filter(|l| matches!(&l.directive, Directive::Blacklist { module: b } if *b == module))
        .map(at)
        .collect();
    let install = m.install_commands().map(|command| {
        // libkmod takes the first `install` line whose pattern matches;
        // patterns are rare: the exact name, else the same command.
        let line = lines
            .iter()
            .find(|l| matches!(&l.directive, Directive::Install { module: i, .. } if *i == module))
            .or_else(|| {
                lines.iter().find(|l| {
                    matches!(&l.directive, Directive::Install { command: c, .. } if *c == command)
                })
            })
            .map(at);
        (command, line)
    });
    let has_softdep = m
        .softdeps()
        .is_ok_and(|(pre, post)| !pre.is_empty() || !post.is_empty());
    let vermagic = m.info().ok().and_then(|info| {
        info.iter()
            .find(|(k, _)| k == "vermagic")
            .and_then(|(_, v)| v.split_ascii_whitespace().next().map(str::to_owned))
    });
    let signature = path
        .as_deref()
        .map(|p| rules::signature_of(p, file_tail(p).as_deref()));
    ModuleFacts {
        via_alias: module != ModuleName::canonical(given).as_str(),
        module,
        path,
        builtin,
        loaded,
        blacklist,
        install,
        has_softdep,
        signature,
        vermagic,
    }
}

/// `nfkit explain NAME...`.
pub fn explain(
    host: &Host,
    release: Option<&str>,
    names: &[String],
) -> Result<ExplainReport, ModuleError> {
    let op = Op::Explain;
    let t = Target::new(host, release, op)?;
    let module_dir_exists = t.module_dir.is_dir();
    let ctx = t.context(op)?;
    let mut log = KmodLog::default();
    log.take(&ctx);
    let kernel = if t.live {
        kernel_facts(host)
    } else {
        KernelFacts::default()
    };
    let (config_text, kernel_config) = kernel_config(host, &t);
    let config_for = |module: &str| -> Vec<ConfigHit> {
        config_text
            .as_deref()
            .map(|text| rules::config_lookup(text, &rules::config_candidates(module)))
            .unwrap_or_default()
    };
    let lines = modprobe_lines(&t.root);
    let mut results = Vec::new();
    for given in names {
        let mods = match lookup(&ctx, &t, op, given) {
            Ok(mods) => mods,
            Err(ModuleError::NotFound {
                legacy,
                suggestions,
                dir,
                ..
            }) => {
                let canonical = ModuleName::canonical(given).into_string();
                let reason = Reason::NotInTree {
                    module_dir: dir,
                    module_dir_exists,
                    config: config_for(&canonical),
                };
                let mut reasons = vec![report(reason, &canonical)];
                if kernel.module_support == Some(false) {
                    reasons.push(report(Reason::NoModuleSupport, &canonical));
                }
                results.push(Explained {
                    name: given.clone(),
                    outcome: Outcome::Unavailable,
                    ok: false,
                    modules: Vec::new(),
                    reasons,
                    legacy,
                    suggestions,
                    helper: None,
                });
                log.take(&ctx);
                continue;
            }
            Err(e) => return Err(e),
        };
        let names: Vec<String> = mods.iter().map(Module::name).collect();
        let mut modules = Vec::new();
        for m in &mods {
            let facts = module_facts(&t, m, given, &lines);
            let hits = config_for(&facts.module);
            let source = kernel_config.file.clone().unwrap_or_default();
            let reasons = rules::reasons(&facts, &kernel, &t.release, Some((&hits, &source)));
            let outcome = rules::decide(&reasons);
            modules.push(ExplainedModule {
                reasons: reasons
                    .into_iter()
                    .map(|r| report(r, &facts.module))
                    .collect(),
                module: facts.module,
                via_alias: facts.via_alias,
                path: facts.path,
                signature: facts.signature,
                vermagic: facts.vermagic,
                outcome,
            });
        }
        let outcome = rules::combine(&modules.iter().map(|m| m.outcome).collect::<Vec<_>>());
        results.push(Explained {
            name: given.clone(),
            ok: outcome.ok(),
            outcome,
            modules,
            reasons: Vec::new(),
            legacy: legacy::lookup(given).map(|l| l.note(&names)),
            suggestions: Vec::new(),
            helper: None,
        });
        log.take(&ctx);
    }
    Ok(ExplainReport {
        offline: !t.live,
        module_dir_exists,
        kernel,
        kernel_config,
        results,
        target: t,
    })
}
