//! `nfkit verify`: desired vs running kernel vs what the next boot applies,
//! naming every file that overrides or contradicts the desired value.

use serde::Serialize;

use super::desired::Desired;
use super::nextboot::{FromFile, NextBoot};
use super::plan::{self, Layout};
use super::runtime::{self, ModuleState, Running};
use super::{modprobe_d, sysctl_d};
use crate::conntrack::limits::effective_buckets;
use crate::system::Host;

/// One verified item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyRow {
    /// What: `module xt_state`, `nf_conntrack.hashsize`, a sysctl key.
    pub item: String,
    /// Desired value.
    pub desired: String,
    /// In the running kernel (`None`: not checked, offline).
    pub running: Option<String>,
    /// What the next boot applies.
    pub boot: String,
    /// The file (and line) that decides the boot value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot_source: Option<String>,
    /// Whether all three agree.
    pub ok: bool,
    /// Files that override or contradict the desired value, and other notes.
    pub notes: Vec<String>,
}

/// The whole verification.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// Host layout.
    pub layout: Layout,
    /// One row per desired item.
    pub rows: Vec<VerifyRow>,
    /// Configuration problems found while reading (file:line: ...).
    pub problems: Vec<String>,
    /// Where `nfkit boot` runs at boot, if it does.
    pub boot_hook: Option<String>,
    /// Conntrack helper modules (desired or loaded) and what assigns them
    /// (warnings only: they do not make `ok` false).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub helpers: Vec<crate::conntrack::helpers::HelperAssessment>,
    /// Whether everything agrees.
    pub ok: bool,
}

fn at(f: &FromFile) -> String {
    format!("{}:{}", f.file.display(), f.line)
}

fn module_running(state: &ModuleState) -> &'static str {
    match state {
        ModuleState::Loaded => "loaded",
        ModuleState::Builtin => "builtin",
        ModuleState::NotLoaded => "not loaded",
        ModuleState::Unknown => "unknown",
    }
}

/// Notes about the sysctl.d lines that set `key` at boot, or name or match
/// it without setting it (globs, `-key` lines), when they matter.
fn sysctl_notes(key: &str, value: &str, setters: &sysctl_d::Setters) -> Vec<String> {
    let at = |s: &sysctl_d::Setter| format!("{}:{}", s.file.display(), s.line);
    let through = |s: &sysctl_d::Setter| {
        s.glob
            .as_ref()
            .map(|g| format!(" through the glob `{g}`"))
            .unwrap_or_default()
    };
    let mut notes = Vec::new();
    let mut lines: Vec<(&sysctl_d::Setter, Option<sysctl_d::Skip>)> =
        setters.writes.iter().map(|s| (s, None)).collect();
    lines.extend(setters.skipped.iter().map(|s| (&s.setter, Some(s.why))));
    lines.sort_by(|a, b| (&a.0.file, a.0.line).cmp(&(&b.0.file, b.0.line)));
    for (s, skip) in lines {
        match skip {
            None | Some(sysctl_d::Skip::Replaced) if s.value != value => {
                notes.push(format!("{} sets {key} = {}{}", at(s), s.value, through(s)))
            }
            Some(sysctl_d::Skip::ExplicitWins) if s.value != value => notes.push(format!(
                "{} sets {key} = {}{}, but not at boot: a line naming the key wins over any glob",
                at(s),
                s.value,
                through(s)
            )),
            Some(sysctl_d::Skip::Cancelled) => notes.push(format!(
                "{} sets {key} = {}, but a later `-{key}` line cancels it: systemd-sysctl does not set the key",
                at(s),
                s.value
            )),
            Some(sysctl_d::Skip::Exclusion) if setters.writes.is_empty() => notes.push(format!(
                "{}: `-{key}` keeps every glob from setting it",
                at(s)
            )),
            _ => {}
        }
    }
    if let Some(last) = setters.winner()
        && last.value != value
    {
        notes.push(format!("{} is applied last and wins", last.file.display()));
    }
    notes
}

/// Builds the report from the three views (pure).
pub fn compare(
    desired: &Desired,
    running: Option<&Running>,
    boot: &NextBoot,
    layout: &Layout,
) -> VerifyReport {
    let mut rows = Vec::new();
    let load_list: Vec<String> = desired
        .load_list()
        .into_iter()
        .map(crate::modules::name::ModuleName::into_string)
        .collect();
    let builtin = |name: &str| {
        running
            .and_then(|r| r.modules.get(name))
            .is_some_and(|(_, state)| *state == ModuleState::Builtin)
    };
    let listed_by_module = boot.modules_listed();
    let module_listed = |name: &str| -> Vec<&FromFile> {
        listed_by_module
            .get(modprobe_d::normalize_module(name).as_str())
            .cloned()
            .unwrap_or_default()
    };
    for name in &load_list {
        let real = running
            .and_then(|r| r.modules.get(name))
            .map(|(real, _)| real.clone())
            .unwrap_or(name.clone());
        let state = running
            .and_then(|r| r.modules.get(name))
            .map(|(_, s)| s.clone());
        let mut listed = module_listed(name);
        if real != *name {
            listed.extend(module_listed(&real));
        }
        let is_builtin = builtin(name);
        let running_text = state.as_ref().map(|s| module_running(s).to_string());
        let running_ok = state.as_ref().is_none_or(|s| {
            matches!(
                s,
                ModuleState::Loaded | ModuleState::Builtin | ModuleState::Unknown
            )
        });
        let boot_ok = is_builtin || !listed.is_empty() || boot.boot_hook.is_some();
        let mut notes = Vec::new();
        if let Some(ModuleState::Unknown) = state {
            notes.push(
                "no module tree and no /sys/module entry: cannot tell whether it is built in"
                    .into(),
            );
        }
        if !boot_ok {
            notes.push(
                "no modules-load.d, /etc/modules or IPTABLES_MODULES entry loads it at boot".into(),
            );
        }
        rows.push(VerifyRow {
            item: format!("module {name}"),
            desired: "loaded".into(),
            running: running_text,
            boot: if is_builtin {
                "builtin".into()
            } else if boot_ok {
                "loaded".into()
            } else {
                "not loaded".into()
            },
            boot_source: listed
                .first()
                .map(|f| at(f))
                .or_else(|| boot.boot_hook.as_ref().map(|h| format!("nfkit boot ({h})"))),
            ok: running_ok && boot_ok,
            notes,
        });
    }
    for (module, options) in desired.module_options() {
        let module = module.into_string();
        let aliases: Vec<&str> = match module.as_str() {
            "nf_conntrack" => vec!["ip_conntrack"],
            _ => vec![],
        };
        let (_, by_alias) = boot.options_for(&module, &aliases);
        for (parameter, value) in &options {
            let (parameter, value) = (parameter.as_str(), value.as_str());
            if module == "nf_conntrack"
                && parameter == "hashsize"
                && desired.conntrack.buckets.is_some()
            {
                continue; // verified as the buckets row below
            }
            let boot_value = boot.option_value(&module, parameter);
            let current = running.and_then(|r| {
                r.parameters
                    .get(&format!("{module}.{parameter}"))
                    .cloned()
                    .flatten()
            });
            let mut notes = Vec::new();
            for alias_line in &by_alias {
                notes.push(format!(
                    "{}: `options {} {}` is keyed by an alias and applies only when loading by that name \
                     (not when {module} is pulled in as a dependency); key it by {module}",
                    at(alias_line),
                    aliases.join("/"),
                    alias_line.value
                ));
            }
            if let Some(b) = &boot_value
                && b.value != value
            {
                notes.push(format!(
                    "{} sets {parameter}={} (overrides the desired value)",
                    at(b),
                    b.value
                ));
            }
            let is_hashsize = module == "nf_conntrack" && parameter == "hashsize";
            let running_ok = match (&current, running) {
                (_, None) => true,
                (Some(c), _) if is_hashsize => value
                    .parse::<u32>()
                    .is_ok_and(|v| c == &effective_buckets(v).to_string()),
                (Some(c), _) => c == value,
                (None, Some(r)) => {
                    // Not loaded (no parameters directory): judged by the module row.
                    !r.modules
                        .values()
                        .any(|(real, s)| real == &module && *s == ModuleState::Loaded)
                }
            };
            let boot_ok =
                boot_value.as_ref().is_some_and(|b| b.value == value) || boot.boot_hook.is_some();
            let module_is_loaded = running.is_some_and(|r| {
                r.modules
                    .values()
                    .any(|(real, s)| real == &module && *s == ModuleState::Loaded)
            });
            if current.is_none() && module_is_loaded {
                notes.push(format!(
                    "{module} is loaded and has no parameter {parameter}: this kernel does not accept it \
                     (some exist only on some kernels, e.g. Virtuozzo's ip_conntrack_disable_ve0)"
                ));
            }
            if !boot_ok && builtin(&module) {
                notes.push(format!(
                    "{module} is built in: modprobe.d options do not apply; use `{module}.{parameter}={value}` on the kernel command line"
                ));
            }
            rows.push(VerifyRow {
                item: format!("{module}.{parameter}"),
                desired: value.to_string(),
                running: running.map(|_| current.clone().unwrap_or_else(|| "(absent)".into())),
                boot: boot_value
                    .as_ref()
                    .map_or_else(|| "(default)".into(), |b| b.value.clone()),
                boot_source: boot_value.as_ref().map(at),
                ok: running_ok && boot_ok,
                notes,
            });
        }
    }
    // IPTABLES_MODULES are loaded by the iptables service, after
    // systemd-sysctl and after rc.sysinit's `sysctl -p`: too late, unless
    // the sysctl files are applied again afterwards (EL6's network service).
    let conntrack_at_boot = builtin("nf_conntrack")
        || boot.module_listed("nf_conntrack").iter().any(|f| {
            f.file != std::path::Path::new(super::plan::IPTABLES_CONFIG)
                || boot.sysctls_after_iptables_modules
        });
    let mut wanted: Vec<(String, String)> = desired
        .sysctl_settings()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if let Some(b) = desired.conntrack.buckets {
        wanted.push((
            crate::conntrack::KEY_BUCKETS.into(),
            effective_buckets(b).to_string(),
        ));
    }
    for (key, value) in wanted {
        let is_buckets = key == crate::conntrack::KEY_BUCKETS;
        let current = running.and_then(|r| r.sysctls.get(&key).cloned().flatten());
        let mut notes = Vec::new();
        let (boot_text, boot_source, boot_ok) = if is_buckets {
            // Buckets at boot come from `options nf_conntrack hashsize=`.
            let (_, by_alias) = boot.options_for("nf_conntrack", &["ip_conntrack"]);
            for alias_line in &by_alias {
                notes.push(format!(
                    "{}: `options ip_conntrack {}` is keyed by an alias and applies only when loading by that \
                     name (not when nf_conntrack is pulled in as a dependency); key it by nf_conntrack",
                    at(alias_line),
                    alias_line.value
                ));
            }
            match boot.option_value("nf_conntrack", "hashsize") {
                Some(h) => {
                    if h.value
                        .parse::<u32>()
                        .map(effective_buckets)
                        .map(|v| v.to_string())
                        .as_deref()
                        != Ok(value.as_str())
                    {
                        notes.push(format!(
                            "{} sets hashsize={} (overrides the desired value)",
                            at(&h),
                            h.value
                        ));
                    }
                    let v = h
                        .value
                        .parse::<u32>()
                        .map(effective_buckets)
                        .map(|v| v.to_string())
                        .unwrap_or(h.value.clone());
                    (v.clone(), Some(at(&h)), v == value)
                }
                None => ("(kernel default)".into(), None, false),
            }
        } else {
            let setters = boot.sysctl_boot(&key);
            notes.extend(sysctl_notes(&key, &value, &setters));
            match setters.winner() {
                Some(w) => (
                    w.value.clone(),
                    Some(format!("{}:{}", w.file.display(), w.line)),
                    w.value == value,
                ),
                // A later `-key` line that cancels the assignments decides.
                None => {
                    let cancelled_by = setters
                        .skipped
                        .iter()
                        .rfind(|s| s.why == sysctl_d::Skip::Exclusion)
                        .filter(|_| {
                            setters
                                .skipped
                                .iter()
                                .any(|s| s.why == sysctl_d::Skip::Cancelled)
                        })
                        .map(|s| format!("{}:{}", s.setter.file.display(), s.setter.line));
                    ("(kernel default)".into(), cancelled_by, false)
                }
            }
        };
        let mut boot_ok = boot_ok;
        let (boot_text, boot_source) = match &boot.boot_hook {
            // `nfkit boot` runs after the sysctl files and sets the desired value.
            Some(hook) if !boot_ok => {
                notes.push(format!(
                    "nfkit boot ({hook}) sets {value} after the files above"
                ));
                boot_ok = true;
                (value.clone(), Some(format!("nfkit boot ({hook})")))
            }
            _ => (boot_text, boot_source),
        };
        if key.starts_with("net.netfilter.nf_conntrack")
            && !is_buckets
            && !conntrack_at_boot
            && boot.boot_hook.is_none()
        {
            let applier = if layout.systemd {
                "systemd-sysctl skips it silently"
            } else {
                "the boot's `sysctl -p` fails on it"
            };
            notes.push(format!(
                "nf_conntrack is not loaded at boot before sysctls are applied, so the key does not exist \
                 yet ({applier}): load nf_conntrack at boot before the sysctls (modules-load.d, /etc/modules, \
                 or IPTABLES_MODULES with the saved rules on EL), or run `nfkit boot` at boot (contrib/)"
            ));
            boot_ok = false;
        }
        let kept_higher = desired.conntrack.never_lower
            && (is_buckets || key == crate::conntrack::KEY_MAX)
            && higher(current.as_deref(), &value);
        if kept_higher {
            notes.push(format!(
                "running {} is higher than desired {value}: kept (never_lower)",
                current.as_deref().unwrap_or_default()
            ));
        }
        rows.push(VerifyRow {
            item: key.clone(),
            desired: value.clone(),
            running: running.map(|_| current.clone().unwrap_or_else(|| "(absent)".into())),
            boot: boot_text,
            boot_source,
            ok: boot_ok
                && running
                    .is_none_or(|_| current.as_deref() == Some(value.as_str()) || kept_higher),
            notes,
        });
    }
    let ok = rows.iter().all(|r| r.ok);
    VerifyReport {
        layout: layout.clone(),
        rows,
        problems: boot.problems.clone(),
        boot_hook: boot.boot_hook.clone(),
        helpers: Vec::new(),
        ok,
    }
}

/// Whether `running` is a number above `desired`.
pub(crate) fn higher(running: Option<&str>, desired: &str) -> bool {
    match (running.map(str::parse::<u64>), desired.parse::<u64>()) {
        (Some(Ok(r)), Ok(d)) => r > d,
        _ => false,
    }
}

/// Names values of the conntrack max row that equal kube-proxy's default
/// formula for `cpus` CPUs (pure).
pub fn note_kube_proxy(report: &mut VerifyReport, cpus: u64) {
    use crate::conntrack::plan::{KUBE_PROXY_MAX_PER_CORE, KUBE_PROXY_MIN, kube_proxy_max};
    let formula = kube_proxy_max(cpus);
    let formula_text = format!(
        "kube-proxy's default max({KUBE_PROXY_MAX_PER_CORE} x {cpus} CPUs, {KUBE_PROXY_MIN}) = {formula}"
    );
    for row in report
        .rows
        .iter_mut()
        .filter(|r| r.item == crate::conntrack::KEY_MAX)
    {
        let is = |v: &str| v.parse::<u64>().ok() == Some(formula);
        if is(&row.desired) {
            row.notes
                .push(format!("the desired value is {formula_text}"));
        }
        if row.running.as_deref().is_some_and(is) && !is(&row.desired) {
            row.notes.push(format!(
                "the running value is {formula_text}: kube-proxy probably set it (it raises only; [conntrack] never_lower = true keeps nfkit from lowering it)"
            ));
        }
    }
}

/// Reads all three views and compares them.
pub fn verify(host: &Host, desired: &Desired) -> Result<VerifyReport, super::files::FileError> {
    let layout = plan::detect(&host.root);
    let boot = NextBoot::read(&host.root, &layout)?;
    let running = (!host.offline).then(|| runtime::read_running(host, desired));
    let mut report = compare(desired, running.as_ref(), &boot, &layout);
    if !host.offline
        && let Ok(cpus) = std::thread::available_parallelism()
    {
        note_kube_proxy(&mut report, cpus.get() as u64);
    }
    let wanted: Vec<String> = desired
        .load_list()
        .into_iter()
        .map(crate::modules::name::ModuleName::into_string)
        .collect();
    report.helpers = crate::conntrack::helper_read::helper_modules(host, &wanted);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persist::testutil::write;

    fn desired() -> Desired {
        Desired::parse(
            "t",
            "[modules]\nload=[\"xt_state\"]\n[conntrack]\nmax=500000\nbuckets=65536\n",
        )
        .unwrap()
    }

    fn systemd_layout() -> Layout {
        Layout {
            systemd: true,
            debian: true,
            etc_modules: false,
            iptables_config: false,
            modprobe_d: true,
            sysctl_d: true,
        }
    }

    #[test]
    fn applied_files_verify_clean_offline() {
        let root = tempfile::tempdir().unwrap();
        let host = Host::offline(root.path());
        let d = Desired {
            persist: super::super::desired::PersistSection {
                targets: Some(vec![
                    super::super::desired::Target::ModulesLoadD,
                    super::super::desired::Target::ModprobeD,
                    super::super::desired::Target::SysctlD,
                ]),
            },
            ..desired()
        };
        super::super::apply::apply(&host, &d, Default::default()).unwrap();
        let report = verify(&host, &d).unwrap();
        assert!(report.ok, "{:#?}", report.rows);
        let items: Vec<&str> = report.rows.iter().map(|r| r.item.as_str()).collect();
        assert_eq!(
            items,
            [
                "module nf_conntrack",
                "module xt_state",
                "net.netfilter.nf_conntrack_max",
                "net.netfilter.nf_conntrack_buckets"
            ]
        );
    }

    #[test]
    fn overriding_and_trap_files_are_named() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        write(r, "/etc/modules-load.d/x.conf", "xt_state\n");
        write(
            r,
            "/etc/sysctl.d/90-nfkit.conf",
            "net.netfilter.nf_conntrack_max = 500000\n",
        );
        write(
            r,
            "/etc/sysctl.d/99-sysctl.conf",
            "net.netfilter.nf_conntrack_max = 65536\n",
        );
        write(
            r,
            "/etc/modprobe.d/parallels.conf",
            "options ip_conntrack ip_conntrack_disable_ve0=0\noptions nf_conntrack hashsize=1024\n",
        );
        let boot = NextBoot::read(r, &systemd_layout()).unwrap();
        let report = compare(&desired(), None, &boot, &systemd_layout());
        assert!(!report.ok);
        let row = |item: &str| report.rows.iter().find(|r| r.item == item).unwrap().clone();
        let max = row("net.netfilter.nf_conntrack_max");
        assert_eq!(max.boot, "65536");
        assert_eq!(
            max.boot_source.as_deref(),
            Some("/etc/sysctl.d/99-sysctl.conf:1")
        );
        assert!(
            max.notes
                .iter()
                .any(|n| n.contains("99-sysctl.conf is applied last")),
            "{:?}",
            max.notes
        );
        assert!(
            max.notes.iter().any(|n| n.contains("skips it silently")),
            "nf_conntrack is not in any list"
        );
        let hashsize = row("net.netfilter.nf_conntrack_buckets");
        assert!(!hashsize.ok);
        assert!(
            hashsize
                .notes
                .iter()
                .any(|n| n.contains("parallels.conf:1") && n.contains("alias")),
            "{:?}",
            hashsize.notes
        );
        assert!(
            hashsize
                .notes
                .iter()
                .any(|n| n.contains("parallels.conf:2 sets hashsize=1024"))
        );
        assert!(!row("module nf_conntrack").ok);
        assert!(row("module xt_state").ok);
    }

    #[test]
    fn running_values_are_compared() {
        let root = tempfile::tempdir().unwrap();
        let boot = NextBoot::read(root.path(), &systemd_layout()).unwrap();
        let mut running = Running::default();
        running.modules.insert(
            "nf_conntrack".into(),
            ("nf_conntrack".into(), ModuleState::Builtin),
        );
        running.modules.insert(
            "xt_state".into(),
            ("xt_state".into(), ModuleState::NotLoaded),
        );
        running.sysctls.insert(
            "net.netfilter.nf_conntrack_max".into(),
            Some("500000".into()),
        );
        let report = compare(&desired(), Some(&running), &boot, &systemd_layout());
        let xt = report
            .rows
            .iter()
            .find(|r| r.item == "module xt_state")
            .unwrap();
        assert_eq!(xt.running.as_deref(), Some("not loaded"));
        assert!(!xt.ok);
        let nf = report
            .rows
            .iter()
            .find(|r| r.item == "module nf_conntrack")
            .unwrap();
        assert!(nf.ok, "built in counts as loaded now and at boot: {nf:?}");
    }

    /// `never_lower`: a higher running max or bucket count is accepted (and
    /// named), a lower one is not; without the flag both differ. `apply`
    /// plans no change for the kept value (same rule, runtime::diff_running).
    #[test]
    fn never_lower_accepts_a_higher_running_value() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        write(
            r,
            "etc/sysctl.d/90-nfkit.conf",
            "net.netfilter.nf_conntrack_max = 500000\n",
        );
        write(
            r,
            "etc/modprobe.d/nfkit.conf",
            "options nf_conntrack hashsize=65536\n",
        );
        let boot = NextBoot::read(r, &systemd_layout()).unwrap();
        let row_for = |never_lower: bool, max: &str, buckets: &str| {
            let mut d = desired();
            d.conntrack.never_lower = never_lower;
            let mut running = Running::default();
            running.modules.insert(
                "nf_conntrack".into(),
                ("nf_conntrack".into(), ModuleState::Builtin),
            );
            running
                .sysctls
                .insert(crate::conntrack::KEY_MAX.into(), Some(max.into()));
            running
                .sysctls
                .insert(crate::conntrack::KEY_BUCKETS.into(), Some(buckets.into()));
            let report = compare(&d, Some(&running), &boot, &systemd_layout());
            let planned = runtime::diff_running(&d, &running);
            let get = |key: &str| {
                let row = report.rows.iter().find(|r| r.item == key).unwrap().clone();
                let plans = planned
                    .iter()
                    .any(|c| c.item == runtime::RuntimeItem::Sysctl(key.into()));
                (row, plans)
            };
            (
                get(crate::conntrack::KEY_MAX),
                get(crate::conntrack::KEY_BUCKETS),
            )
        };
        let ((max, plan_max), (buckets, plan_buckets)) = row_for(true, "1048576", "131072");
        assert!(max.ok && buckets.ok, "{max:?} {buckets:?}");
        assert!(!plan_max && !plan_buckets);
        assert!(max.notes.iter().any(|n| n.contains("kept (never_lower)")));
        let ((max, plan_max), _) = row_for(true, "100", "65536");
        assert!(!max.ok && plan_max, "lower is raised: {max:?}");
        let ((max, plan_max), (buckets, plan_buckets)) = row_for(false, "1048576", "131072");
        assert!(!max.ok && !buckets.ok && plan_max && plan_buckets);
        let ((max, _), _) = row_for(true, "500000", "65536");
        assert!(max.ok && max.notes.iter().all(|n| !n.contains("never_lower")));
    }

    #[test]
    fn kube_proxy_values_are_named() {
        let root = tempfile::tempdir().unwrap();
        let boot = NextBoot::read(root.path(), &systemd_layout()).unwrap();
        let mut running = Running::default();
        running
            .sysctls
            .insert(crate::conntrack::KEY_MAX.into(), Some("262144".into()));
        let mut report = compare(&desired(), Some(&running), &boot, &systemd_layout());
        note_kube_proxy(&mut report, 8);
        let row = |report: &VerifyReport| {
            report
                .rows
                .iter()
                .find(|r| r.item == crate::conntrack::KEY_MAX)
                .unwrap()
                .notes
                .clone()
        };
        let notes = row(&report);
        assert!(
            notes.iter().any(|n| n.contains(
                "running value is kube-proxy's default max(32768 x 8 CPUs, 131072) = 262144"
            )),
            "{notes:?}"
        );
        // One sentence: no run of spaces from a broken line continuation.
        assert!(notes.iter().all(|n| !n.contains("  ")), "{notes:?}");
        assert!(
            notes
                .iter()
                .any(|n| n.contains("(it raises only; [conntrack] never_lower = true")),
            "{notes:?}"
        );
        // 4 CPUs: the formula gives 131072, matching neither value.
        let mut report = compare(&desired(), Some(&running), &boot, &systemd_layout());
        note_kube_proxy(&mut report, 4);
        assert!(row(&report).iter().all(|n| !n.contains("kube-proxy")));
        // A desired value equal to the formula is named as such.
        let mut d = desired();
        d.conntrack.max = Some(131_072);
        let mut report = compare(&d, Some(&running), &boot, &systemd_layout());
        note_kube_proxy(&mut report, 2);
        assert!(
            row(&report)
                .iter()
                .any(|n| n.contains("desired value is kube-proxy's default"))
        );
    }

    #[test]
    fn glob_keys_and_exclusions_decide_the_boot_value() {
        let d = Desired::parse(
            "t",
            "[sysctl]\n\"net.netfilter.nf_conntrack_tcp_timeout_close\" = 20\n\"net.netfilter.nf_conntrack_udp_timeout\" = 40\n\"net.netfilter.nf_conntrack_acct\" = 1\n",
        )
        .unwrap();
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        write(r, "/etc/modules-load.d/c.conf", "nf_conntrack\n");
        // A glob sets close; a later glob with another value loses to the
        // explicit udp line of an earlier file; a later `-key` cancels acct.
        write(
            r,
            "/usr/lib/sysctl.d/10-a.conf",
            "net.netfilter.nf_conntrack_tcp_timeout_* = 20\nnet.netfilter.nf_conntrack_udp_timeout = 40\nnet.netfilter.nf_conntrack_acct = 1\n",
        );
        write(
            r,
            "/etc/sysctl.d/99-z.conf",
            "net/netfilter/nf_conntrack_udp_* = 99\n-net.netfilter.nf_conntrack_acct\n",
        );
        let boot = NextBoot::read(r, &systemd_layout()).unwrap();
        let report = compare(&d, None, &boot, &systemd_layout());
        let row = |item: &str| report.rows.iter().find(|r| r.item == item).unwrap().clone();
        let close = row("net.netfilter.nf_conntrack_tcp_timeout_close");
        assert!(close.ok, "{close:?}");
        assert_eq!(
            close.boot_source.as_deref(),
            Some("/usr/lib/sysctl.d/10-a.conf:1")
        );
        let udp = row("net.netfilter.nf_conntrack_udp_timeout");
        assert!(udp.ok, "{udp:?}");
        assert!(
            udp.notes
                .iter()
                .any(|n| n.contains("99-z.conf:1") && n.contains("wins over any glob")),
            "{:?}",
            udp.notes
        );
        let acct = row("net.netfilter.nf_conntrack_acct");
        assert!(!acct.ok);
        assert_eq!(acct.boot, "(kernel default)");
        assert!(
            acct.notes
                .iter()
                .any(|n| n.contains("10-a.conf:3") && n.contains("cancels")),
            "{:?}",
            acct.notes
        );
    }
}
