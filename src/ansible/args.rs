//! A task's arguments (the JSON file Ansible gives a binary module) checked
//! and turned into nfkit's types (pure). Ansible enforces neither argument
//! specs nor check mode for binary modules: every key is checked here, and
//! an unknown one is refused with the list of valid ones. `_ansible_*` keys
//! are Ansible's own: the ones nfkit uses are read, the others ignored (new
//! ones appear between releases).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{Map, Value};

use crate::persist::desired::{
    ConntrackSection, Desired, DesiredError, ModulesSection, PersistSection, Target,
};
pub use crate::persist::import::ImportFrom;
use crate::persist::values::{self, ModuleName, OptionName, OptionValue, ValueError};

/// The modules of the collection (one binary behind them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleKind {
    /// `nfkit.netfilter.apply`.
    Apply,
    /// `nfkit.netfilter.verify`.
    Verify,
    /// `nfkit.netfilter.facts`.
    Facts,
    /// `nfkit.netfilter.import`.
    Import,
    /// `nfkit.netfilter.kmod`.
    Kmod,
}

impl ModuleKind {
    /// Every module, in documentation order.
    pub const ALL: [ModuleKind; 5] = [
        ModuleKind::Apply,
        ModuleKind::Verify,
        ModuleKind::Facts,
        ModuleKind::Import,
        ModuleKind::Kmod,
    ];

    /// The module's short name (its file name in `plugins/modules`).
    pub fn name(self) -> &'static str {
        match self {
            ModuleKind::Apply => "apply",
            ModuleKind::Verify => "verify",
            ModuleKind::Facts => "facts",
            ModuleKind::Import => "import",
            ModuleKind::Kmod => "kmod",
        }
    }

    /// The module a program file name stands for: the module's own name,
    /// or Ansible's copy of it on the target (`AnsiballZ_NAME`).
    pub fn from_program(file_name: &str) -> Option<ModuleKind> {
        let name = file_name.strip_prefix("AnsiballZ_").unwrap_or(file_name);
        ModuleKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The arguments the module takes, sorted.
    pub fn valid_arguments(self) -> &'static [&'static str] {
        match self {
            ModuleKind::Apply => &[
                "config",
                "conntrack",
                "module_options",
                "modules",
                "persist_targets",
                "root",
                "sysctl",
                "write_config",
            ],
            ModuleKind::Verify => &[
                "config",
                "conntrack",
                "fail_on_drift",
                "module_options",
                "modules",
                "persist_targets",
                "root",
                "sysctl",
            ],
            ModuleKind::Facts => &["root"],
            ModuleKind::Import => &["all", "from", "paths", "root"],
            ModuleKind::Kmod => &["name", "params", "persistent", "root", "state"],
        }
    }
}

/// What Ansible asks of every module.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mode {
    /// `--check`: change nothing, report what would change.
    pub check: bool,
    /// `--diff`: include file diffs and runtime before/after.
    pub diff: bool,
}

/// Where the desired state comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DesiredFrom {
    /// Given in the task (`modules`, `module_options`, `conntrack`,
    /// `sysctl`, `persist_targets`).
    Inline(Desired),
    /// An nfkit.toml: `config` (a path on the target), or the default
    /// `/etc/nfkit/nfkit.toml` under `root` when `None`.
    File(Option<PathBuf>),
}

/// `kmod`'s `state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KmodState {
    /// Loaded.
    Present,
    /// Not loaded.
    Absent,
}

/// `kmod`'s `persistent` (the values of `community.general.modprobe`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistent {
    /// Leave the persistent configuration alone (the default).
    Disabled,
    /// Record the module (and params) in nfkit.toml and write the files
    /// that load it at boot.
    Present,
    /// Remove the module from nfkit.toml and from nfkit's files.
    Absent,
}

/// A task, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Task {
    /// `apply`.
    Apply {
        desired: DesiredFrom,
        root: Option<PathBuf>,
        write_config: bool,
    },
    /// `verify`.
    Verify {
        desired: DesiredFrom,
        root: Option<PathBuf>,
        fail_on_drift: bool,
    },
    /// `facts`.
    Facts { root: Option<PathBuf> },
    /// `import`.
    Import {
        root: Option<PathBuf>,
        from: ImportFrom,
        all: bool,
        paths: Vec<PathBuf>,
    },
    /// `kmod`.
    Kmod {
        name: ModuleName,
        state: KmodState,
        params: Vec<(OptionName, OptionValue)>,
        persistent: Persistent,
        root: Option<PathBuf>,
    },
}

/// Why a task's arguments were refused (nothing was done).
#[derive(Debug, thiserror::Error)]
pub enum ArgError {
    /// The arguments file is not a JSON object.
    #[error("read the task arguments: {reason}")]
    NotAnObject { reason: String },
    /// A key the module does not take.
    #[error("{module}: unsupported argument{} {}", if .names.len() == 1 { "" } else { "s" }, .names.join(", "))]
    Unknown {
        module: &'static str,
        names: Vec<String>,
        valid: &'static [&'static str],
    },
    /// A value of the wrong JSON type.
    #[error("{module}: argument {name}: expected {expected}, got {got}")]
    Type {
        module: &'static str,
        name: String,
        expected: &'static str,
        got: String,
    },
    /// A value outside the allowed ones.
    #[error("{module}: argument {name}: {value:?} is not one of {}", .allowed.join(", "))]
    Choice {
        module: &'static str,
        name: String,
        value: String,
        allowed: &'static [&'static str],
    },
    /// A value its type refuses.
    #[error("{module}: argument {name}")]
    Value {
        module: &'static str,
        name: String,
        #[source]
        source: ValueError,
    },
    /// A required argument is missing.
    #[error("{module}: missing required argument {name}")]
    Missing { module: &'static str, name: String },
    /// Arguments that exclude each other.
    #[error("{module}: argument {name} cannot be combined with {}", .with.join(", "))]
    Exclusive {
        module: &'static str,
        name: String,
        with: Vec<String>,
    },
    /// The inline desired state is refused as a whole.
    #[error("{module}: the desired state in the task arguments")]
    Desired {
        module: &'static str,
        #[source]
        source: DesiredError,
    },
}

impl crate::error::Hint for ArgError {
    fn hint(&self) -> Option<std::borrow::Cow<'static, str>> {
        match self {
            ArgError::Unknown { valid, .. } => {
                Some(format!("valid arguments: {}", valid.join(", ")))
            }
            ArgError::Exclusive { .. } => Some(
                "give the desired state either inline (modules, module_options, conntrack, \
                 sysctl, persist_targets) or as config (an nfkit.toml on the target)"
                    .to_string(),
            ),
            ArgError::Desired { .. } => Some(
                "the inline arguments are checked like nfkit.toml: modules = [names], \
                 module_options = {module: {param: value}}, conntrack = {max, buckets, \
                 allow_unlimited, never_lower}, sysctl = {net.netfilter.KEY: value}"
                    .to_string(),
            ),
            _ => None,
        }
        .map(std::borrow::Cow::Owned)
    }
}

/// The arguments of the inline desired state.
const INLINE: [&str; 5] = [
    "modules",
    "module_options",
    "conntrack",
    "sysctl",
    "persist_targets",
];

fn type_name(v: &Value) -> String {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a dict",
    }
    .to_string()
}

/// Reads one task's arguments.
struct Reader<'a> {
    module: &'static str,
    args: &'a Map<String, Value>,
}

impl<'a> Reader<'a> {
    /// The value of `name`; an explicit `null` (an unset option in YAML)
    /// counts as absent.
    fn get(&self, name: &str) -> Option<&'a Value> {
        self.args.get(name).filter(|v| !v.is_null())
    }

    fn type_error(&self, name: &str, expected: &'static str, got: &Value) -> ArgError {
        ArgError::Type {
            module: self.module,
            name: name.to_string(),
            expected,
            got: type_name(got),
        }
    }

    fn bool(&self, name: &str, default: bool) -> Result<bool, ArgError> {
        match self.get(name) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            // YAML `yes`/`no` reach a binary module as booleans; strings
            // the way Ansible's own boolean() reads them.
            Some(Value::String(s)) => match s.to_ascii_lowercase().as_str() {
                "yes" | "true" | "on" | "1" | "y" | "t" => Ok(true),
                "no" | "false" | "off" | "0" | "n" | "f" => Ok(false),
                _ => Err(self.type_error(name, "a boolean", &Value::String(s.clone()))),
            },
            Some(v) => Err(self.type_error(name, "a boolean", v)),
        }
    }

    fn string(&self, name: &str) -> Result<Option<&'a str>, ArgError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.type_error(name, "a string", v)),
        }
    }

    fn path(&self, name: &str) -> Result<Option<PathBuf>, ArgError> {
        match self.string(name)? {
            None => Ok(None),
            Some("") => Err(self.type_error(name, "a non-empty path", &Value::String("".into()))),
            Some(s) => Ok(Some(PathBuf::from(s))),
        }
    }

    fn choice(
        &self,
        name: &str,
        allowed: &'static [&'static str],
        default: &'static str,
    ) -> Result<&'a str, ArgError> {
        let Some(value) = self.string(name)? else {
            return Ok(default);
        };
        allowed
            .iter()
            .find(|a| **a == value)
            .map(|_| value)
            .ok_or_else(|| ArgError::Choice {
                module: self.module,
                name: name.to_string(),
                value: value.to_string(),
                allowed,
            })
    }

    fn value_error(&self, name: String) -> impl FnOnce(ValueError) -> ArgError + '_ {
        move |source| ArgError::Value {
            module: self.module,
            name,
            source,
        }
    }
}

/// Splits the arguments into the task's own keys and Ansible's
/// (`_ansible_*`); refuses keys the module does not take.
fn own_keys(
    kind: ModuleKind,
    args: &Map<String, Value>,
) -> Result<(Map<String, Value>, Mode), ArgError> {
    let mut own = Map::new();
    let mut unknown = Vec::new();
    let mut mode = Mode::default();
    for (key, value) in args {
        if let Some(internal) = key.strip_prefix("_ansible_") {
            let flag = value.as_bool().unwrap_or(false);
            match internal {
                "check_mode" => mode.check = flag,
                "diff" => mode.diff = flag,
                _ => {}
            }
        } else if kind.valid_arguments().contains(&key.as_str()) {
            own.insert(key.clone(), value.clone());
        } else {
            unknown.push(key.clone());
        }
    }
    if !unknown.is_empty() {
        return Err(ArgError::Unknown {
            module: kind.name(),
            names: unknown,
            valid: kind.valid_arguments(),
        });
    }
    Ok((own, mode))
}

/// Parses the text of the arguments file.
pub fn parse_text(kind: ModuleKind, text: &str) -> Result<(Task, Mode), ArgError> {
    let value: Value = serde_json::from_str(text).map_err(|e| ArgError::NotAnObject {
        reason: e.to_string(),
    })?;
    let Value::Object(map) = value else {
        return Err(ArgError::NotAnObject {
            reason: format!("expected a JSON object, got {}", type_name(&value)),
        });
    };
    parse(kind, &map)
}

/// Only the `_ansible_*` flags, read even when the task's own arguments are
/// refused (so an error report still knows the mode).
pub fn mode_of(text: &str) -> Mode {
    let mut mode = Mode::default();
    if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(text) {
        mode.check = map.get("_ansible_check_mode").and_then(Value::as_bool) == Some(true);
        mode.diff = map.get("_ansible_diff").and_then(Value::as_bool) == Some(true);
    }
    mode
}

/// Checks a task's arguments.
pub fn parse(kind: ModuleKind, args: &Map<String, Value>) -> Result<(Task, Mode), ArgError> {
    let (own, mode) = own_keys(kind, args)?;
    let r = Reader {
        module: kind.name(),
        args: &own,
    };
    let root = r.path("root")?;
    let task = match kind {
        ModuleKind::Apply => Task::Apply {
            desired: desired_from(&r)?,
            root,
            write_config: r.bool("write_config", false)?,
        },
        ModuleKind::Verify => Task::Verify {
            desired: desired_from(&r)?,
            root,
            fail_on_drift: r.bool("fail_on_drift", false)?,
        },
        ModuleKind::Facts => Task::Facts { root },
        ModuleKind::Import => Task::Import {
            root,
            from: match r.choice("from", &["auto", "rhel", "pcs", "debian"], "auto")? {
                "rhel" => ImportFrom::Rhel,
                "pcs" => ImportFrom::Pcs,
                "debian" => ImportFrom::Debian,
                _ => ImportFrom::Auto,
            },
            all: r.bool("all", false)?,
            paths: strings(&r, "paths")?
                .into_iter()
                .map(PathBuf::from)
                .collect(),
        },
        ModuleKind::Kmod => {
            let name = r.string("name")?.ok_or_else(|| ArgError::Missing {
                module: r.module,
                name: "name".into(),
            })?;
            let name = values::module_name(name).map_err(r.value_error("name".into()))?;
            Task::Kmod {
                params: kmod_params(&r)?,
                name,
                state: match r.choice("state", &["present", "absent"], "present")? {
                    "absent" => KmodState::Absent,
                    _ => KmodState::Present,
                },
                persistent: match r.choice(
                    "persistent",
                    &["disabled", "present", "absent"],
                    "disabled",
                )? {
                    "present" => Persistent::Present,
                    "absent" => Persistent::Absent,
                    _ => Persistent::Disabled,
                },
                root,
            }
        }
    };
    Ok((task, mode))
}

/// A list of strings (a single string is a list of one, as Ansible's
/// `type: list` reads it).
fn strings(r: &Reader<'_>, name: &str) -> Result<Vec<String>, ArgError> {
    match r.get(name) {
        None => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                other => Err(r.type_error(name, "a list of strings", other)),
            })
            .collect(),
        Some(v) => Err(r.type_error(name, "a list of strings", v)),
    }
}

/// A parameter or sysctl value: an integer, a boolean (1 / 0) or a string,
/// each checked by the type's constructor (as in nfkit.toml).
fn scalar<T>(
    r: &Reader<'_>,
    field: &str,
    v: &Value,
    parse: impl Fn(&str) -> Result<T, ValueError>,
) -> Result<T, ArgError> {
    match v {
        Value::String(s) => parse(s).map_err(r.value_error(field.to_string())),
        Value::Bool(b) => {
            parse(if *b { "1" } else { "0" }).map_err(r.value_error(field.to_string()))
        }
        Value::Number(n) if n.is_i64() || n.is_u64() => {
            parse(&n.to_string()).map_err(r.value_error(field.to_string()))
        }
        other => Err(r.type_error(field, "an integer, a boolean or a string", other)),
    }
}

fn option_value(r: &Reader<'_>, field: &str, v: &Value) -> Result<OptionValue, ArgError> {
    scalar(r, field, v, OptionValue::parse)
}

/// `kmod`'s `params`: a dict (`{hashsize: 1024}`), or the string form of
/// `community.general.modprobe` (`"hashsize=1024 expect_hashsize=64"`).
fn kmod_params(r: &Reader<'_>) -> Result<Vec<(OptionName, OptionValue)>, ArgError> {
    match r.get("params") {
        None => Ok(Vec::new()),
        Some(Value::String(s)) => s
            .split_ascii_whitespace()
            .map(|word| values::split_word(word).map_err(r.value_error("params".into())))
            .collect(),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| {
                let field = format!("params.{k}");
                let name = OptionName::parse(k).map_err(r.value_error(field.clone()))?;
                Ok((name, option_value(r, &field, v)?))
            })
            .collect(),
        Some(v) => Err(r.type_error("params", "a dict (or a string of name=value words)", v)),
    }
}

/// The desired state: inline keys or `config`, not both.
fn desired_from(r: &Reader<'_>) -> Result<DesiredFrom, ArgError> {
    let inline: Vec<String> = INLINE
        .iter()
        .filter(|k| r.get(k).is_some())
        .map(|k| k.to_string())
        .collect();
    let config = r.path("config")?;
    if config.is_some() && !inline.is_empty() {
        return Err(ArgError::Exclusive {
            module: r.module,
            name: "config".into(),
            with: inline,
        });
    }
    if inline.is_empty() {
        return Ok(DesiredFrom::File(config));
    }
    Ok(DesiredFrom::Inline(inline_desired(r)?))
}

fn inline_desired(r: &Reader<'_>) -> Result<Desired, ArgError> {
    let mut desired = Desired {
        modules: ModulesSection {
            load: strings(r, "modules")?
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    values::module_name(m).map_err(r.value_error(format!("modules[{i}]")))
                })
                .collect::<Result<_, _>>()?,
            options: BTreeMap::new(),
        },
        conntrack: ConntrackSection::default(),
        sysctl: BTreeMap::new(),
        persist: PersistSection::default(),
    };
    if let Some(options) = r.get("module_options") {
        let Value::Object(modules) = options else {
            return Err(r.type_error("module_options", "a dict of dicts", options));
        };
        for (module, params) in modules {
            let field = format!("module_options.{module}");
            let name = values::module_name(module).map_err(r.value_error(field.clone()))?;
            let Value::Object(params) = params else {
                return Err(r.type_error(&field, "a dict (parameter: value)", params));
            };
            let merged = desired.modules.options.entry(name).or_default();
            for (param, value) in params {
                let pfield = format!("{field}.{param}");
                let pname = OptionName::parse(param).map_err(r.value_error(pfield.clone()))?;
                let value = option_value(r, &pfield, value)?;
                // Two spellings of one module (`nf-nat`, `nf_nat`) merge, as
                // in nfkit.toml; one parameter must then have one value.
                if let Some(other) = merged.get(&pname)
                    && *other != value
                {
                    return Err(ArgError::Desired {
                        module: r.module,
                        source: DesiredError::Invalid {
                            path: "task arguments".into(),
                            field: pfield,
                            reason: format!(
                                "written twice (`-` and `_` spellings are the same module) with the values {other} and {value}; set only one"
                            ),
                        },
                    });
                }
                merged.insert(pname, value);
            }
        }
    }
    if let Some(conntrack) = r.get("conntrack") {
        let Value::Object(map) = conntrack else {
            return Err(r.type_error("conntrack", "a dict", conntrack));
        };
        let sub = Reader {
            module: r.module,
            args: map,
        };
        let unknown: Vec<String> = map
            .keys()
            .filter(|k| !["max", "buckets", "allow_unlimited", "never_lower"].contains(&k.as_str()))
            .map(|k| format!("conntrack.{k}"))
            .collect();
        if !unknown.is_empty() {
            return Err(ArgError::Unknown {
                module: r.module,
                names: unknown,
                valid: &[
                    "conntrack.allow_unlimited",
                    "conntrack.buckets",
                    "conntrack.max",
                    "conntrack.never_lower",
                ],
            });
        }
        let number = |name: &str| -> Result<Option<u32>, ArgError> {
            match sub.get(name) {
                None => Ok(None),
                Some(Value::Number(n)) => n
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .map(Some)
                    .ok_or_else(|| {
                        r.type_error(
                            &format!("conntrack.{name}"),
                            "an integer from 0 to 4294967295",
                            &Value::Number(n.clone()),
                        )
                    }),
                Some(Value::String(s)) => s.trim().parse::<u32>().map(Some).map_err(|_| {
                    r.type_error(
                        &format!("conntrack.{name}"),
                        "an integer from 0 to 4294967295",
                        &Value::String(s.clone()),
                    )
                }),
                Some(v) => Err(r.type_error(&format!("conntrack.{name}"), "an integer", v)),
            }
        };
        let flag = |name: &str| -> Result<bool, ArgError> {
            sub.bool(name, false).map_err(|e| match e {
                ArgError::Type {
                    module,
                    expected,
                    got,
                    ..
                } => ArgError::Type {
                    module,
                    name: format!("conntrack.{name}"),
                    expected,
                    got,
                },
                other => other,
            })
        };
        desired.conntrack = ConntrackSection {
            max: number("max")?,
            buckets: number("buckets")?,
            allow_unlimited: flag("allow_unlimited")?,
            never_lower: flag("never_lower")?,
        };
    }
    if let Some(sysctl) = r.get("sysctl") {
        let Value::Object(map) = sysctl else {
            return Err(r.type_error("sysctl", "a dict (key: value)", sysctl));
        };
        let mut pairs = Vec::new();
        for (k, v) in map {
            let field = format!("sysctl.{k}");
            let key = values::SysctlKey::parse(k).map_err(r.value_error(field.clone()))?;
            pairs.push((key, scalar(r, &field, v, values::SysctlValue::parse)?));
        }
        for (key, value) in pairs {
            if let Some(other) = desired.sysctl.get(&key)
                && *other != value
            {
                return Err(ArgError::Desired {
                    module: r.module,
                    source: DesiredError::Invalid {
                        path: "task arguments".into(),
                        field: format!("sysctl.{key}"),
                        reason: format!(
                            "written twice (`.` and `/` spellings are the same key) with the values {other} and {value}; set only one"
                        ),
                    },
                });
            }
            desired.sysctl.insert(key, value);
        }
    }
    let targets = strings(r, "persist_targets")?;
    if r.get("persist_targets").is_some() {
        let mut list = Vec::new();
        for (i, t) in targets.iter().enumerate() {
            let target =
                serde_json::from_value::<Target>(Value::String(t.clone())).map_err(|_| {
                    ArgError::Choice {
                        module: r.module,
                        name: format!("persist_targets[{i}]"),
                        value: t.clone(),
                        allowed: &[
                            "modules-load.d",
                            "etc-modules",
                            "modprobe.d",
                            "sysctl.d",
                            "iptables-config",
                            "sysctl.conf",
                        ],
                    }
                })?;
            list.push(target);
        }
        desired.persist.targets = Some(list);
    }
    desired
        .validate("task arguments")
        .map_err(|source| ArgError::Desired {
            module: r.module,
            source,
        })?;
    Ok(desired)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn parse_json(kind: ModuleKind, v: Value) -> Result<(Task, Mode), ArgError> {
        parse(kind, v.as_object().unwrap())
    }

    fn inline(v: Value) -> Desired {
        match parse_json(ModuleKind::Apply, v).unwrap().0 {
            Task::Apply {
                desired: DesiredFrom::Inline(d),
                ..
            } => d,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn program_names() {
        assert_eq!(ModuleKind::from_program("apply"), Some(ModuleKind::Apply));
        assert_eq!(
            ModuleKind::from_program("AnsiballZ_kmod"),
            Some(ModuleKind::Kmod)
        );
        assert_eq!(ModuleKind::from_program("nfkit"), None);
        assert_eq!(ModuleKind::from_program("AnsiballZ_nfkit"), None);
    }

    #[test]
    fn modes_and_unknown_internal_keys() {
        let (_, mode) = parse_json(
            ModuleKind::Facts,
            json!({"_ansible_check_mode": true, "_ansible_diff": true,
                   "_ansible_some_future_key": {"x": 1}}),
        )
        .unwrap();
        assert_eq!(
            mode,
            Mode {
                check: true,
                diff: true
            }
        );
    }

    #[test]
    fn unknown_arguments_are_listed_with_the_valid_ones() {
        let e = parse_json(ModuleKind::Kmod, json!({"name": "x", "parms": "a=1"})).unwrap_err();
        assert_eq!(e.to_string(), "kmod: unsupported argument parms");
        let hint = crate::error::Hint::hint(&e).unwrap();
        assert_eq!(
            hint,
            "valid arguments: name, params, persistent, root, state"
        );
    }

    #[test]
    fn config_excludes_inline_state() {
        let e = parse_json(
            ModuleKind::Verify,
            json!({"config": "/x.toml", "sysctl": {"net.netfilter.a": 1}}),
        )
        .unwrap_err();
        assert!(matches!(e, ArgError::Exclusive { .. }), "{e}");
        let (task, _) = parse_json(ModuleKind::Verify, json!({"root": "/r"})).unwrap();
        assert_eq!(
            task,
            Task::Verify {
                desired: DesiredFrom::File(None),
                root: Some("/r".into()),
                fail_on_drift: false
            }
        );
    }

    #[test]
    fn kmod_params_dict_or_modprobe_string() {
        let words = |v: Value| match parse_json(
            ModuleKind::Kmod,
            json!({"name": "nf_conntrack", "params": v}),
        )
        .unwrap()
        .0
        {
            Task::Kmod { params, .. } => params
                .iter()
                .map(|(k, v)| format!("{}={}", k.as_str(), v.as_str()))
                .collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            words(json!({"hashsize": 1024, "acct": true})),
            ["acct=1", "hashsize=1024"]
        );
        assert_eq!(
            words(json!("hashsize=1024  acct=1")),
            ["hashsize=1024", "acct=1"]
        );
        assert!(
            parse_json(ModuleKind::Kmod, json!({"params": {}})).is_err(),
            "name is required"
        );
        assert!(
            parse_json(
                ModuleKind::Kmod,
                json!({"name": "x", "params": {"a": "b c"}})
            )
            .is_err()
        );
        assert!(parse_json(ModuleKind::Kmod, json!({"name": "x", "state": "loaded"})).is_err());
    }

    #[test]
    fn refusals_name_the_argument() {
        for (args, needle) in [
            (
                json!({"modules": "xt_state", "conntrack": 5}),
                "argument conntrack: expected a dict",
            ),
            (json!({"conntrack": {"max": -1}}), "conntrack.max"),
            (json!({"conntrack": {"max": 0}}), "conntrack.max"),
            (
                json!({"sysctl": {"net.ipv4.ip_forward": 1}}),
                "net.netfilter",
            ),
            (
                json!({"sysctl": {"net.netfilter.x": [1]}}),
                "sysctl.net.netfilter.x",
            ),
            (
                json!({"module_options": {"nf_nat": 1}}),
                "module_options.nf_nat",
            ),
            (
                json!({"persist_targets": ["sysctl-d"]}),
                "persist_targets[0]",
            ),
            (json!({"write_config": "maybe"}), "write_config"),
            (json!({"root": ""}), "root"),
        ] {
            let e = parse_json(ModuleKind::Apply, args.clone()).unwrap_err();
            let message = crate::error::message(&e);
            assert!(message.contains(needle), "{args}: {message}");
        }
    }

    #[test]
    fn two_spellings_of_one_module_merge_or_conflict() {
        let d = inline(json!({"module_options": {"nf-nat": {"a": 1}, "nf_nat": {"b": 2}}}));
        assert_eq!(d.modules.options.len(), 1);
        assert!(
            parse_json(
                ModuleKind::Apply,
                json!({"module_options": {"nf-nat": {"a": 1}, "nf_nat": {"a": 2}}})
            )
            .is_err()
        );
    }

    fn pick(items: &'static [&'static str]) -> impl Strategy<Value = &'static str> {
        proptest::sample::select(items)
    }

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            (0i64..100_000).prop_map(|n| json!(n)),
            any::<bool>().prop_map(|b| json!(b)),
            pick(&["on", "0x10", "a,b", "007"]).prop_map(|s| json!(s)),
        ]
    }

    proptest! {
        /// The inline arguments mean exactly what the same state means in
        /// nfkit.toml: JSON args → Desired equals TOML text → Desired.
        #[test]
        fn inline_state_equals_the_same_nfkit_toml(
            modules in proptest::collection::vec(pick(&["xt_state", "nf_nat", "nf-nat", "ip_conntrack_ftp", "xt_LOG"]), 0..4),
            options in proptest::collection::btree_map(pick(&["nf_conntrack", "nf_nat_ftp", "xt_recent"]),
                proptest::collection::btree_map(pick(&["ports", "expect_hashsize", "ip_list_tot"]), value(), 1..3), 0..3),
            max in proptest::option::of(1u32..4_000_000),
            buckets in proptest::option::of(1u32..1_000_000),
            sysctl in proptest::collection::btree_map(pick(&["net.netfilter.nf_conntrack_acct", "net.netfilter.nf_log_all_netns", "net/netfilter/nf_conntrack_helper"]), value(), 0..3),
        ) {
            let mut args = Map::new();
            let mut toml = String::new();
            args.insert("modules".into(), json!(modules));
            toml.push_str(&format!("[modules]\nload = {}\n", json!(modules)));
            args.insert("module_options".into(), json!(options));
            for (m, o) in &options {
                toml.push_str(&format!("[modules.options.{m}]\n"));
                for (k, v) in o {
                    toml.push_str(&format!("{k} = {v}\n"));
                }
            }
            let mut conntrack = Map::new();
            toml.push_str("[conntrack]\n");
            if let Some(m) = max { conntrack.insert("max".into(), json!(m)); toml.push_str(&format!("max = {m}\n")); }
            if let Some(b) = buckets { conntrack.insert("buckets".into(), json!(b)); toml.push_str(&format!("buckets = {b}\n")); }
            args.insert("conntrack".into(), Value::Object(conntrack));
            args.insert("sysctl".into(), json!(sysctl));
            toml.push_str("[sysctl]\n");
            for (k, v) in &sysctl {
                toml.push_str(&format!("{} = {v}\n", json!(k)));
            }
            let from_toml = Desired::parse("t", &toml);
            let from_args = parse(ModuleKind::Apply, &args);
            match (from_toml, from_args) {
                (Ok(d), Ok((Task::Apply { desired: DesiredFrom::Inline(a), .. }, _))) => prop_assert_eq!(d, a),
                (Err(_), Err(_)) => {}
                (t, a) => prop_assert!(false, "toml {:?} vs args {:?}\n{}", t, a, toml),
            }
        }

        /// Any argument outside the module's list is refused and named;
        /// any `_ansible_*` key is accepted.
        #[test]
        fn unknown_keys_refused_internal_keys_ignored(key in "[a-z_]{1,12}", internal in "[a-z_]{1,12}") {
            for kind in ModuleKind::ALL {
                let internal_args = json!({ format!("_ansible_{internal}"): 1, "root": "/r", "name": "x" });
                let mut map = internal_args.as_object().unwrap().clone();
                if kind != ModuleKind::Kmod { map.remove("name"); }
                prop_assert!(parse(kind, &map).is_ok(), "{:?} {}", kind, internal);
                if kind.valid_arguments().contains(&key.as_str()) || key.starts_with("_ansible_") {
                    continue;
                }
                map.insert(key.clone(), json!(1));
                match parse(kind, &map) {
                    Err(ArgError::Unknown { names, .. }) => prop_assert_eq!(names, vec![key.clone()]),
                    other => prop_assert!(false, "{:?}: {:?}", kind, other),
                }
            }
        }
    }
}
