//! The running kernel's side of the desired state: what is loaded and set
//! now, and converging it (modules first, then the sysctls that exist only
//! once their module is loaded).

use std::collections::BTreeMap;

use serde::Serialize;

use super::desired::Desired;
use crate::conntrack::set::{self as ct_set, SetRequest};
use crate::conntrack::{KEY_BUCKETS, KEY_MAX};
use crate::error::ErrorObject;
use crate::modules::sysfs;
use crate::modules::{self, Jobs, LoadFlags, LoadRequest, ModState};
use crate::system::Host;

/// State of one desired module in the running kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModuleState {
    /// Loaded (live, coming or going).
    Loaded,
    /// Built into the kernel.
    Builtin,
    /// Not in the kernel.
    NotLoaded,
    /// Cannot be told (no module tree and no sysfs entry).
    Unknown,
}

/// The running state relevant to a desired state.
#[derive(Debug, Clone, Default)]
pub struct Running {
    /// Module name (as desired) → (real name, state).
    pub modules: BTreeMap<String, (String, ModuleState)>,
    /// `module.parameter` → current value in `/sys/module/M/parameters/P`.
    pub parameters: BTreeMap<String, Option<String>>,
    /// sysctl key → current value (`None`: key absent).
    pub sysctls: BTreeMap<String, Option<String>>,
}

/// The state of a module known by its real name from `/proc/modules` and
/// `/sys/module` alone, without libkmod (`None`: cannot tell from there).
fn state_from_kernel_files(host: &Host, loaded: &[String], name: &str) -> Option<ModuleState> {
    if loaded.iter().any(|m| m == name) {
        return Some(ModuleState::Loaded);
    }
    match sysfs::read_sys_module(&host.sys_root, name) {
        Some(m) if m.initstate.is_none() => Some(ModuleState::Builtin),
        Some(_) => Some(ModuleState::Loaded),
        None => None,
    }
}

/// Reads the running state for `desired`.
///
/// Names found in `/proc/modules` or `/sys/module` are settled from those
/// files; only the others (aliases, modules not loaded, built-ins without a
/// sysfs directory) are resolved through libkmod. In the steady state nothing
/// loads libkmod (and the libcrypto, libzstd and liblzma it pulls in), which
/// keeps `verify` and `apply --check` cheap.
pub fn read_running(host: &Host, desired: &Desired) -> Running {
    let mut running = Running::default();
    let names: Vec<String> = desired
        .load_list()
        .into_iter()
        .map(crate::modules::name::ModuleName::into_string)
        .collect();
    let loaded: Vec<String> = sysfs::read_proc_modules(&host.proc_root)
        .ok()
        .flatten()
        .map(|mods| mods.into_iter().map(|m| m.name).collect())
        .unwrap_or_default();
    let mut unsettled = Vec::new();
    for name in &names {
        // Load list names are canonical (`_`).
        let real = name.clone();
        match state_from_kernel_files(host, &loaded, &real) {
            Some(state) => {
                running.modules.insert(name.clone(), (real, state));
            }
            None => unsettled.push(name.clone()),
        }
    }
    let resolved = if host.offline || unsettled.is_empty() {
        Vec::new()
    } else {
        modules::states(host, &unsettled).unwrap_or_default()
    };
    for (i, name) in unsettled.iter().enumerate() {
        let from_resolve = resolved.get(i).cloned().flatten().map(|(module, state)| {
            let state = match state {
                ModState::Builtin => ModuleState::Builtin,
                ModState::NotLoaded => ModuleState::NotLoaded,
                ModState::Live | ModState::Coming | ModState::Going | ModState::Unknown => {
                    ModuleState::Loaded
                }
            };
            (module, state)
        });
        let entry = from_resolve.unwrap_or_else(|| {
            let state = if host.has_module_support() && !host.offline {
                ModuleState::NotLoaded
            } else {
                ModuleState::Unknown
            };
            (name.clone(), state)
        });
        running.modules.insert(name.clone(), entry);
    }
    for (module, options) in desired.module_options() {
        for (parameter, _) in options {
            let path = host
                .sys("module")
                .join(module.as_str())
                .join("parameters")
                .join(parameter.as_str());
            let value = host
                .read_io(&path, crate::read::Kind::KernelValue)
                .ok()
                .map(|v| v.trim().to_string());
            running
                .parameters
                .insert(format!("{module}.{parameter}"), value);
        }
    }
    let sysctl = host.sysctl();
    let mut keys: Vec<String> = desired
        .sysctl_settings()
        .into_iter()
        .map(|(k, _)| k.to_string())
        .collect();
    if desired.conntrack.buckets.is_some() {
        keys.push(crate::conntrack::KEY_BUCKETS.to_string());
    }
    for key in keys {
        let value = sysctl
            .read(&key)
            .ok()
            .flatten()
            .map(|v| v.trim().to_string());
        running.sysctls.insert(key, value);
    }
    running
}

/// One thing of the running kernel that a desired state speaks about. The
/// one key shared by planning ([`diff_running`]), converging ([`converge`])
/// and reporting: an outcome is produced for a planned item by acting on
/// that item, so it can only be reported against the item it is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RuntimeItem {
    /// A module to be loaded (the name as desired, possibly an alias).
    Module(String),
    /// A module parameter (`/sys/module/MODULE/parameters/PARAMETER`).
    Parameter {
        /// Real module name.
        module: String,
        /// Parameter name.
        parameter: String,
    },
    /// A sysctl, by its dotted key.
    Sysctl(String),
    /// Something the next boot would still get wrong (verify's item name:
    /// `module xt_state`, a sysctl key, `module.parameter`); never converged
    /// at run time, only reported under `remaining`.
    NextBoot(String),
}

impl RuntimeItem {
    /// `module`, `parameter` or `sysctl` (the JSON `kind`).
    pub fn kind(&self) -> &'static str {
        match self {
            RuntimeItem::Module(_) => "module",
            RuntimeItem::Parameter { .. } => "parameter",
            RuntimeItem::Sysctl(_) => "sysctl",
            RuntimeItem::NextBoot(_) => "next_boot",
        }
    }
}

impl std::fmt::Display for RuntimeItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RuntimeItem::Module(name) => write!(f, "module {name}"),
            RuntimeItem::Parameter { module, parameter } => write!(f, "{module}.{parameter}"),
            RuntimeItem::Sysctl(key) => f.write_str(key),
            RuntimeItem::NextBoot(item) => write!(f, "next boot: {item}"),
        }
    }
}

/// One runtime difference: planned, or (in a report of changes) made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeChange {
    /// What.
    pub item: RuntimeItem,
    /// Value now (before).
    pub before: String,
    /// Value wanted (after).
    pub after: String,
    /// Whether apply can converge it without disruption.
    pub convergeable: bool,
    /// Explanation, when not convergeable or special.
    pub note: Option<String>,
}

impl Serialize for RuntimeChange {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("RuntimeChange", 6)?;
        st.serialize_field("item", &self.item.to_string())?;
        st.serialize_field("kind", self.item.kind())?;
        st.serialize_field("before", &self.before)?;
        st.serialize_field("after", &self.after)?;
        st.serialize_field("convergeable", &self.convergeable)?;
        if let Some(note) = &self.note {
            st.serialize_field("note", note)?;
        } else {
            st.skip_field("note")?;
        }
        st.end()
    }
}

fn show(value: &Option<String>) -> String {
    value.clone().unwrap_or_else(|| "(absent)".into())
}

/// The differences between the running kernel and `desired`, in the order
/// they are converged: modules, parameters, sysctls (conntrack max first,
/// buckets last).
pub fn diff_running(desired: &Desired, running: &Running) -> Vec<RuntimeChange> {
    let mut changes = Vec::new();
    for (name, (real, state)) in &running.modules {
        if *state == ModuleState::NotLoaded {
            changes.push(RuntimeChange {
                item: RuntimeItem::Module(name.clone()),
                before: "not loaded".into(),
                after: if real != name {
                    format!("loaded ({real})")
                } else {
                    "loaded".into()
                },
                convergeable: true,
                note: None,
            });
        }
    }
    let buckets_key = crate::conntrack::KEY_BUCKETS;
    for (module, options) in desired.module_options() {
        let module_loaded = running.modules.values().any(|(real, state)| {
            real == &module && matches!(state, ModuleState::Loaded | ModuleState::Builtin)
        });
        for (parameter, value) in &options {
            let (parameter, value) = (parameter.as_str(), value.as_str());
            if module.as_str() == "nf_conntrack" && parameter == "hashsize" {
                continue; // converged through the buckets sysctl below
            }
            let current = running
                .parameters
                .get(&format!("{module}.{parameter}"))
                .cloned()
                .flatten();
            if module_loaded && current.as_deref() != Some(value) {
                changes.push(RuntimeChange {
                    item: RuntimeItem::Parameter {
                        module: module.to_string(),
                        parameter: parameter.to_string(),
                    },
                    before: show(&current),
                    after: value.to_string(),
                    convergeable: false,
                    note: Some(match current {
                        None => format!(
                            "{module} is loaded and has no parameter {parameter}: the kernel does not accept it"
                        ),
                        Some(_) => format!(
                            "takes effect when {module} is next loaded (reboot, or `nfkit modules unload {module}` then `nfkit apply`)"
                        ),
                    }),
                });
            }
        }
    }
    let mut wanted: Vec<(String, String)> = desired
        .sysctl_settings()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if let Some(b) = desired.conntrack.buckets {
        wanted.push((
            buckets_key.to_string(),
            crate::conntrack::limits::effective_buckets(b).to_string(),
        ));
    }
    for (key, value) in wanted {
        let current = running.sysctls.get(&key).cloned().flatten();
        let kept_higher = desired.conntrack.never_lower
            && (key == buckets_key || key == KEY_MAX)
            && super::verify::higher(current.as_deref(), &value);
        if current.as_deref() != Some(value.as_str()) && !kept_higher {
            changes.push(RuntimeChange {
                item: RuntimeItem::Sysctl(key.clone()),
                before: show(&current),
                after: value,
                convergeable: true,
                note: current
                    .is_none()
                    .then(|| "set once its module is loaded".to_string()),
            });
        }
    }
    changes
}

/// What converging did with one planned item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Outcome {
    /// Changed as planned.
    Changed,
    /// Not changed: a rule of this host forbids it (read-only outside the
    /// initial network namespace, no permission, a modprobe.d policy).
    Refused {
        /// Operation, object, causes, hint.
        error: ErrorObject,
    },
    /// Not changed: only the host can change it (issue 14 §6: a module
    /// insert without CAP_SYS_MODULE or outside the initial user namespace,
    /// a global conntrack limit outside the initial network namespace).
    MustBeDoneOnHost {
        /// Operation, object, causes, hint.
        error: ErrorObject,
    },
    /// Not changed: the attempt failed.
    Failed {
        /// Operation, object, causes, hint.
        error: ErrorObject,
    },
}

/// A planned item that was not changed (refused or failed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeFailure {
    /// The planned difference, as planned.
    pub change: RuntimeChange,
    /// [`Outcome::Refused`], [`Outcome::MustBeDoneOnHost`] or
    /// [`Outcome::Failed`].
    pub outcome: Outcome,
}

impl RuntimeFailure {
    /// The error (operation, object, causes, hint).
    pub fn error(&self) -> Option<&ErrorObject> {
        match &self.outcome {
            Outcome::Refused { error }
            | Outcome::MustBeDoneOnHost { error }
            | Outcome::Failed { error } => Some(error),
            Outcome::Changed => None,
        }
    }

    /// Whether a rule refused it (rather than an attempt failing).
    pub fn refused(&self) -> bool {
        matches!(self.outcome, Outcome::Refused { .. })
    }

    /// The outcome's name in text and JSON: `refused`,
    /// `must_be_done_on_host` or `failed`.
    pub fn outcome_name(&self) -> &'static str {
        match self.outcome {
            Outcome::Refused { .. } => "refused",
            Outcome::MustBeDoneOnHost { .. } => "must_be_done_on_host",
            Outcome::Failed { .. } | Outcome::Changed => "failed",
        }
    }

    /// The outcome in words (text output).
    pub fn outcome_text(&self) -> &'static str {
        match self.outcome {
            Outcome::MustBeDoneOnHost { .. } => "must be done on the host",
            _ => self.outcome_name(),
        }
    }
}

impl Serialize for RuntimeFailure {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("RuntimeFailure", 7)?;
        st.serialize_field("item", &self.change.item.to_string())?;
        st.serialize_field("kind", self.change.item.kind())?;
        st.serialize_field("before", &self.change.before)?;
        st.serialize_field("wanted", &self.change.after)?;
        st.serialize_field("outcome", self.outcome_name())?;
        st.serialize_field("error", &self.error())?;
        st.end()
    }
}

/// The result of converging: one outcome per convergeable planned item, in
/// plan order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Converged {
    /// (planned difference, what happened to it).
    pub items: Vec<(RuntimeChange, Outcome)>,
}

impl Converged {
    /// The differences that were changed.
    pub fn changed(&self) -> Vec<RuntimeChange> {
        self.items
            .iter()
            .filter(|(_, o)| *o == Outcome::Changed)
            .map(|(c, _)| c.clone())
            .collect()
    }

    /// The items refused or failed.
    pub fn failures(&self) -> Vec<RuntimeFailure> {
        self.items
            .iter()
            .filter(|(_, o)| *o != Outcome::Changed)
            .map(|(c, o)| RuntimeFailure {
                change: c.clone(),
                outcome: o.clone(),
            })
            .collect()
    }
}

/// The differences left after converging, read again from the kernel,
/// without the items already reported as refused or failed.
pub fn remaining(
    host: &Host,
    desired: &Desired,
    failures: &[RuntimeFailure],
) -> Vec<RuntimeChange> {
    diff_running(desired, &read_running(host, desired))
        .into_iter()
        .filter(|c| !failures.iter().any(|f| f.change.item == c.item))
        .collect()
}

/// How modules get their options when converging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionsFrom {
    /// From modprobe.d (apply has just written nfkit's file there).
    ModprobeD,
    /// Passed with the load, from the desired state (`nfkit boot`, for hosts
    /// whose modprobe.d nfkit does not manage).
    Desired,
}

/// The outcome of a module load that did not succeed.
fn module_outcome(error: Option<&crate::modules::error::ErrorInfo>) -> Outcome {
    let Some(e) = error else {
        return Outcome::Failed {
            error: ErrorObject::text("load failed"),
        };
    };
    let error = e.error.clone();
    match e.kind {
        "blacklisted" | "disabled_by_policy" | "command_refused" | "not_permitted" => {
            Outcome::Refused { error }
        }
        "must_be_done_on_host" => Outcome::MustBeDoneOnHost { error },
        _ => Outcome::Failed { error },
    }
}

/// Loads the planned modules (one libkmod context for all), one outcome
/// per request, in request order.
fn load_modules(
    host: &Host,
    desired: &Desired,
    modules: &[(String, String)],
    options_from: OptionsFrom,
    jobs: Jobs,
) -> Vec<Outcome> {
    let requests: Vec<LoadRequest> = modules
        .iter()
        .map(|(name, real)| LoadRequest {
            name: name.clone(),
            options: match options_from {
                OptionsFrom::ModprobeD => Vec::new(),
                OptionsFrom::Desired => desired
                    .module_options()
                    .into_iter()
                    .filter(|(m, _)| *real == *m)
                    .flat_map(|(_, o)| o)
                    .map(|(name, value)| crate::modules::options::ModOption {
                        name: name.to_string(),
                        value: Some(value.to_string()),
                    })
                    .collect(),
            },
        })
        .collect();
    let flags = LoadFlags {
        jobs,
        ..LoadFlags::default()
    };
    match modules::load(host, None, &requests, flags) {
        // One result per request, in order (modules::load's contract).
        Ok(report) if report.results.len() == requests.len() => report
            .results
            .iter()
            .map(|r| {
                if r.ok {
                    Outcome::Changed
                } else {
                    module_outcome(
                        r.error
                            .as_ref()
                            .or_else(|| r.modules.iter().find_map(|m| m.error.as_ref())),
                    )
                }
            })
            .collect(),
        Ok(report) => vec![
            Outcome::Failed {
                error: ErrorObject::text(format!(
                    "load modules: {} results for {} requests",
                    report.results.len(),
                    requests.len()
                )),
            };
            requests.len()
        ],
        Err(e) => vec![
            Outcome::Failed {
                error: ErrorObject::of(&e),
            };
            requests.len()
        ],
    }
}

/// Sets one conntrack limit through [`ct_set::set_limits`] (validation,
/// namespace refusal, read-back).
fn set_limit(host: &Host, request: SetRequest) -> Outcome {
    match ct_set::set_limits(host, request, false) {
        Ok(_) => Outcome::Changed,
        Err(e) => {
            let error = ErrorObject::of(&e);
            if matches!(e, ct_set::SetError::NotInitialNamespace { .. }) {
                Outcome::MustBeDoneOnHost { error }
            } else {
                Outcome::Failed { error }
            }
        }
    }
}

/// Writes one sysctl (after its module may have appeared).
fn set_sysctl(host: &Host, key: &str, value: &str) -> Outcome {
    let sysctl = host.sysctl();
    let current = sysctl
        .read(key)
        .ok()
        .flatten()
        .map(|v| v.trim().to_string());
    if current.as_deref() == Some(value) {
        return Outcome::Changed; // loading its module set it
    }
    match sysctl.write(key, value) {
        Ok(()) => Outcome::Changed,
        Err(e) => {
            let error = ErrorObject::of(&e);
            match e.raw_os_error() {
                Some(libc::EACCES | libc::EPERM | libc::EROFS) => Outcome::Refused { error },
                _ => Outcome::Failed { error },
            }
        }
    }
}

/// Converges the running kernel: acts on each convergeable planned item —
/// loads missing modules, then sets the sysctls (which exist only once their
/// module is loaded; conntrack buckets before max) — and returns one outcome
/// per item. Continues past failures. The modules are inserted by the
/// parallel loader with `jobs` workers.
pub fn converge(
    host: &Host,
    desired: &Desired,
    options_from: OptionsFrom,
    jobs: Jobs,
) -> Converged {
    let before = read_running(host, desired);
    let planned: Vec<RuntimeChange> = diff_running(desired, &before)
        .into_iter()
        .filter(|c| c.convergeable)
        .collect();
    let mut outcomes: Vec<Option<Outcome>> = vec![None; planned.len()];
    let modules: Vec<(usize, (String, String))> = planned
        .iter()
        .enumerate()
        .filter_map(|(i, c)| match &c.item {
            RuntimeItem::Module(name) => before
                .modules
                .get(name)
                .map(|(real, _)| (i, (name.clone(), real.clone()))),
            _ => None,
        })
        .collect();
    if !modules.is_empty() {
        let pairs: Vec<(String, String)> = modules.iter().map(|(_, p)| p.clone()).collect();
        for ((i, _), outcome) in
            modules
                .iter()
                .zip(load_modules(host, desired, &pairs, options_from, jobs))
        {
            outcomes[*i] = Some(outcome);
        }
    }
    // Buckets before max: a resize can fail (ENOMEM) and max is still set.
    let mut sysctls: Vec<usize> = (0..planned.len())
        .filter(|&i| matches!(planned[i].item, RuntimeItem::Sysctl(_)))
        .collect();
    sysctls.sort_by_key(|&i| planned[i].item != RuntimeItem::Sysctl(KEY_BUCKETS.into()));
    for i in sysctls {
        let RuntimeItem::Sysctl(key) = &planned[i].item else {
            continue;
        };
        outcomes[i] = Some(if key == KEY_BUCKETS {
            set_limit(
                host,
                SetRequest {
                    max: None,
                    buckets: desired.conntrack.buckets,
                    never_lower: desired.conntrack.never_lower,
                },
            )
        } else if key == KEY_MAX {
            set_limit(
                host,
                SetRequest {
                    max: desired.conntrack.max,
                    buckets: None,
                    never_lower: desired.conntrack.never_lower,
                },
            )
        } else {
            set_sysctl(host, key, &planned[i].after)
        });
    }
    Converged {
        items: planned
            .into_iter()
            .zip(outcomes)
            .map(|(change, outcome)| {
                let outcome = outcome.unwrap_or_else(|| Outcome::Failed {
                    error: ErrorObject::text(format!("{}: nothing acted on it", change.item)),
                });
                (change, outcome)
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired() -> Desired {
        Desired::parse(
            "t",
            "[modules]\nload=[\"xt_state\"]\n[modules.options.nf_conntrack]\nexpect_hashsize = 2048\n[conntrack]\nmax=1000\nbuckets=1000\n",
        )
        .unwrap()
    }

    #[test]
    fn differences_between_running_and_desired() {
        let mut running = Running::default();
        running.modules.insert(
            "nf_conntrack".into(),
            ("nf_conntrack".into(), ModuleState::Loaded),
        );
        running.modules.insert(
            "xt_state".into(),
            ("xt_state".into(), ModuleState::NotLoaded),
        );
        running
            .parameters
            .insert("nf_conntrack.expect_hashsize".into(), Some("1024".into()));
        running
            .sysctls
            .insert("net.netfilter.nf_conntrack_max".into(), Some("1000".into()));
        running.sysctls.insert(
            "net.netfilter.nf_conntrack_buckets".into(),
            Some("512".into()),
        );
        let changes = diff_running(&desired(), &running);
        let items: Vec<RuntimeItem> = changes.iter().map(|c| c.item.clone()).collect();
        assert_eq!(
            items,
            [
                RuntimeItem::Module("xt_state".into()),
                RuntimeItem::Parameter {
                    module: "nf_conntrack".into(),
                    parameter: "expect_hashsize".into()
                },
                RuntimeItem::Sysctl("net.netfilter.nf_conntrack_buckets".into()),
            ]
        );
        let shown: Vec<String> = items.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "module xt_state",
                "nf_conntrack.expect_hashsize",
                "net.netfilter.nf_conntrack_buckets"
            ]
        );
        assert!(!changes[1].convergeable);
        assert_eq!(changes[2].after, "1024", "buckets round up to 512s");
    }

    #[test]
    fn nothing_differs_when_converged() {
        let mut running = Running::default();
        running.modules.insert(
            "nf_conntrack".into(),
            ("nf_conntrack".into(), ModuleState::Builtin),
        );
        running
            .modules
            .insert("xt_state".into(), ("xt_state".into(), ModuleState::Loaded));
        running
            .parameters
            .insert("nf_conntrack.expect_hashsize".into(), Some("2048".into()));
        running
            .sysctls
            .insert("net.netfilter.nf_conntrack_max".into(), Some("1000".into()));
        running.sysctls.insert(
            "net.netfilter.nf_conntrack_buckets".into(),
            Some("1024".into()),
        );
        assert_eq!(diff_running(&desired(), &running), vec![]);
    }

    /// The state of one sysctl file in a generated fake kernel tree.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Key {
        /// Not in the desired state.
        NotDesired,
        /// Holds the desired value already.
        Equal,
        /// Differs; writable.
        Differs,
        /// Differs; mode 0444 (as outside the initial network namespace).
        ReadOnly,
        /// Not in the tree (its module is not there).
        Absent,
        /// A directory where the key should be (every write fails).
        Broken,
    }

    /// Converging over every combination of key states: each planned item
    /// gets exactly one outcome, the outcome is the one of its own key
    /// (never of another), a refused or failed key keeps its value, and a
    /// changed key holds the wanted value.
    #[test]
    fn each_outcome_belongs_to_its_own_item() {
        use std::fs;
        use std::os::unix::fs::PermissionsExt;
        let limit_states = [Key::NotDesired, Key::Equal, Key::Differs, Key::ReadOnly];
        let other_states = [
            Key::NotDesired,
            Key::Equal,
            Key::Differs,
            Key::Absent,
            Key::Broken,
        ];
        // (key, wanted, other value)
        let keys = [
            (KEY_MAX, "5000", "262144"),
            (KEY_BUCKETS, "2048", "1024"),
            ("net.netfilter.nf_conntrack_tcp_loose", "0", "1"),
            ("net.netfilter.nf_conntrack_acct", "1", "0"),
        ];
        let mut combinations = 0;
        for a in limit_states {
            for b in limit_states {
                for c in other_states {
                    for d in other_states {
                        let states = [a, b, c, d];
                        combinations += 1;
                        let dir = tempfile::tempdir().unwrap();
                        let nf = dir.path().join("proc/sys/net/netfilter");
                        fs::create_dir_all(&nf).unwrap();
                        fs::create_dir_all(dir.path().join("sys/module/nf_conntrack")).unwrap();
                        let mut toml = String::from("[conntrack]\n");
                        let mut sysctl = String::from("[sysctl]\n");
                        for ((key, wanted, other), state) in keys.iter().zip(states) {
                            let file = nf.join(key.rsplit('.').next().unwrap());
                            match state {
                                Key::Absent => {}
                                Key::Broken => fs::create_dir(&file).unwrap(),
                                Key::Equal => fs::write(&file, format!("{wanted}\n")).unwrap(),
                                _ => fs::write(&file, format!("{other}\n")).unwrap(),
                            }
                            if state == Key::ReadOnly {
                                fs::set_permissions(&file, fs::Permissions::from_mode(0o444))
                                    .unwrap();
                            }
                            if state == Key::NotDesired {
                                continue;
                            }
                            match *key {
                                KEY_MAX => toml.push_str(&format!("max = {wanted}\n")),
                                KEY_BUCKETS => toml.push_str(&format!("buckets = {wanted}\n")),
                                _ => sysctl.push_str(&format!("\"{key}\" = {wanted}\n")),
                            }
                        }
                        let desired = Desired::parse("t", &format!("{toml}{sysctl}")).unwrap();
                        let mut host = Host::offline(dir.path());
                        host.offline = false; // a fake live tree
                        let planned = diff_running(&desired, &read_running(&host, &desired));
                        let converged =
                            converge(&host, &desired, OptionsFrom::ModprobeD, Jobs::auto());
                        let items: Vec<&RuntimeItem> =
                            converged.items.iter().map(|(c, _)| &c.item).collect();
                        let planned_items: Vec<&RuntimeItem> =
                            planned.iter().map(|c| &c.item).collect();
                        assert_eq!(items, planned_items, "{states:?}");
                        for ((key, wanted, other), state) in keys.iter().zip(states) {
                            let item = RuntimeItem::Sysctl(key.to_string());
                            let outcome = converged
                                .items
                                .iter()
                                .find(|(c, _)| c.item == item)
                                .map(|(_, o)| o);
                            let file = nf.join(key.rsplit('.').next().unwrap());
                            let now = fs::read_to_string(&file).ok();
                            let ctx = format!("{states:?} {key}: {outcome:?}");
                            match state {
                                Key::NotDesired | Key::Equal => assert_eq!(outcome, None, "{ctx}"),
                                Key::Differs => {
                                    assert_eq!(outcome, Some(&Outcome::Changed), "{ctx}");
                                    assert_eq!(
                                        now.as_deref().map(str::trim),
                                        Some(*wanted),
                                        "{ctx}"
                                    );
                                }
                                Key::ReadOnly => {
                                    // The global limits are read-only only
                                    // outside the initial network namespace:
                                    // the host's job; any other key: refused.
                                    if [KEY_MAX, KEY_BUCKETS].contains(key) {
                                        assert!(
                                            matches!(
                                                outcome,
                                                Some(Outcome::MustBeDoneOnHost { .. })
                                            ),
                                            "{ctx}"
                                        );
                                    } else {
                                        assert!(
                                            matches!(outcome, Some(Outcome::Refused { .. })),
                                            "{ctx}"
                                        );
                                    }
                                    assert_eq!(
                                        now.as_deref().map(str::trim),
                                        Some(*other),
                                        "{ctx}"
                                    );
                                }
                                Key::Absent | Key::Broken => {
                                    assert!(
                                        matches!(outcome, Some(Outcome::Failed { .. })),
                                        "{ctx}"
                                    );
                                }
                            }
                        }
                        let changed = converged.changed();
                        let failures = converged.failures();
                        assert_eq!(changed.len() + failures.len(), planned.len());
                        for f in &failures {
                            assert!(
                                !changed.iter().any(|c| c.item == f.change.item),
                                "{states:?}"
                            );
                        }
                    }
                }
            }
        }
        assert_eq!(combinations, 400);
    }
}
