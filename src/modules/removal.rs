//! `modprobe -r` reimplemented: the steps of kmod's `rmmod_do_module`
//! (tools/modprobe.c), over a small backend trait so that the same code runs
//! for real (libkmod) and as a dry run (an in-memory simulation).
//!
//! For one module M (flags: ignore commands `-i`; builtin ignored for
//! softdeps):
//! 1. read M's softdeps and remove command (unless ignoring commands);
//! 2. not loaded → nothing to do (even with a remove command); builtin →
//!    error (softdeps: skip);
//! 3. post-softdeps, in reverse order (errors ignored);
//! 4. refcount > 0 → "in use" (EBUSY), naming the holders;
//! 5. remove M;
//! 6. each hard dependency whose refcount is now 0 is removed (errors
//!    ignored; one level of modules.dep, which lists all of them);
//! 7. pre-softdeps, in reverse order (errors ignored).
//!
//! Differences from modprobe, on purpose: a configured remove command is
//! never run (`/bin/true`/`/bin/false` = disabled by policy, others are
//! refused unless commands are ignored; a module that is not loaded is
//! `not_loaded` whatever its command), and the dry run simulates the
//! refcount drops so it lists the dependencies a real run would remove
//! (`modprobe -r -n` does not).

use std::collections::{HashMap, HashSet};

use nix::errno::Errno;
use serde::Serialize;

/// Load state of a module as far as unloading cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Not in the kernel.
    NotLoaded,
    /// Built into the kernel.
    Builtin,
    /// Loaded (live, coming or going).
    Loaded,
}

/// What the planner needs to know about one module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// Module name.
    pub name: String,
    /// Load state.
    pub state: State,
    /// Reference count.
    pub refcnt: u32,
    /// Modules holding it.
    pub holders: Vec<String>,
    /// Hard dependencies, modules.dep order.
    pub deps: Vec<String>,
    /// Pre-softdeps.
    pub pre: Vec<String>,
    /// Post-softdeps.
    pub post: Vec<String>,
    /// Configured remove command.
    pub remove_command: Option<String>,
}

/// The planner's view of the system.
pub trait Backend {
    /// Current facts about `name`.
    fn facts(&mut self, name: &str) -> Result<Facts, Errno>;
    /// Removes `name` from the kernel.
    fn remove(&mut self, name: &str) -> Result<(), Errno>;
}

/// Why a module is in the removal list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Named by the user.
    Target,
    /// A pre- or post-softdep of `of`.
    Softdep {
        /// The module that declared it.
        of: String,
    },
    /// A hard dependency of `of` that became unused.
    UnusedDependency {
        /// The module removed before it.
        of: String,
    },
}

/// One module the run touched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// Module name.
    pub module: String,
    /// Why it is here.
    #[serde(flatten)]
    pub role: Role,
    /// What happened.
    pub result: StepResult,
}

/// What happened to one module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum StepResult {
    /// Removed (dry run: would be removed).
    Removed,
    /// Left in place; `reason` says why (softdeps and dependencies only).
    Kept {
        /// Why.
        reason: String,
    },
    /// Removal failed with this errno (softdeps and dependencies only; a
    /// target failure is the run's error).
    Failed {
        /// errno name.
        errno: String,
    },
}

/// Why the target could not be removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Built into the kernel.
    Builtin,
    /// Refcount > 0.
    InUse {
        /// Reference count.
        refcnt: u32,
        /// Holders.
        holders: Vec<String>,
    },
    /// Remove command `/bin/true`/`/bin/false`.
    DisabledByPolicy(String),
    /// Any other remove command.
    Command(String),
    /// The backend failed (facts or removal).
    Errno(Errno),
}

/// The result of unloading one module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Every module removed or considered, in order.
    pub steps: Vec<Step>,
    /// `Ok(true)`: removed; `Ok(false)`: was not loaded; `Err`: refused.
    pub result: Result<bool, Refusal>,
}

/// `true`/`false` as a whole command: the usual "never load/unload" policy.
pub fn is_policy_command(cmd: &str) -> bool {
    matches!(
        cmd.trim(),
        "/bin/true" | "/bin/false" | "/usr/bin/true" | "/usr/bin/false" | "true" | "false"
    )
}

/// Unloads `name` (a real module name) with modprobe -r's steps.
pub fn unload(backend: &mut dyn Backend, name: &str, ignore_commands: bool) -> Outcome {
    let mut steps = Vec::new();
    let result = unload_one(backend, name, ignore_commands, None, &mut steps);
    Outcome { steps, result }
}

fn unload_one(
    b: &mut dyn Backend,
    name: &str,
    ignore_commands: bool,
    softdep_of: Option<&str>,
    steps: &mut Vec<Step>,
) -> Result<bool, Refusal> {
    let f = b.facts(name).map_err(Refusal::Errno)?;
    let (pre, post, cmd) = if ignore_commands {
        (Vec::new(), Vec::new(), None)
    } else {
        (f.pre.clone(), f.post.clone(), f.remove_command.clone())
    };
    let role = || match softdep_of {
        None => Role::Target,
        Some(of) => Role::Softdep { of: of.to_owned() },
    };
    // A module that is not loaded has nothing to unload, whatever its remove
    // command would do (modprobe would run the command anyway).
    match f.state {
        State::NotLoaded => return Ok(false),
        State::Builtin => return Err(Refusal::Builtin),
        State::Loaded => {}
    }
    if let Some(cmd) = cmd {
        // modprobe would run it instead of removing; nfkit never runs it.
        if is_policy_command(&cmd) {
            return Err(Refusal::DisabledByPolicy(cmd));
        }
        return Err(Refusal::Command(cmd));
    }
    // Post-softdeps, reverse order, errors ignored.
    for m in post.iter().rev() {
        softdep(b, m, name, steps);
    }
    let f = b.facts(name).map_err(Refusal::Errno)?;
    if f.refcnt > 0 {
        return Err(Refusal::InUse {
            refcnt: f.refcnt,
            holders: f.holders,
        });
    }
    b.remove(name).map_err(Refusal::Errno)?;
    steps.push(Step {
        module: name.to_owned(),
        role: role(),
        result: StepResult::Removed,
    });
    // Now-unused hard dependencies; errors are not fatal.
    for dep in &f.deps {
        let Ok(d) = b.facts(dep) else { continue };
        if d.state != State::Loaded {
            continue;
        }
        let result = if d.refcnt > 0 {
            continue;
        } else {
            match b.remove(dep) {
                Ok(()) => StepResult::Removed,
                Err(e) => StepResult::Failed {
                    errno: format!("{e:?}"),
                },
            }
        };
        steps.push(Step {
            module: dep.clone(),
            role: Role::UnusedDependency {
                of: name.to_owned(),
            },
            result,
        });
    }
    // Pre-softdeps, reverse order, errors ignored.
    for m in pre.iter().rev() {
        softdep(b, m, name, steps);
    }
    Ok(true)
}

fn softdep(b: &mut dyn Backend, m: &str, of: &str, steps: &mut Vec<Step>) {
    let reason = match unload_one(b, m, false, Some(of), steps) {
        Ok(_) => return,
        Err(Refusal::Builtin) => return,
        Err(Refusal::InUse { holders, .. }) if holders.is_empty() => "in use".to_owned(),
        Err(Refusal::InUse { holders, .. }) => format!("in use by {}", holders.join(", ")),
        Err(Refusal::DisabledByPolicy(c)) => format!("disabled by policy (remove command `{c}`)"),
        Err(Refusal::Command(c)) => format!("has remove command `{c}`, which nfkit never runs"),
        Err(Refusal::Errno(e)) => {
            steps.push(Step {
                module: m.to_owned(),
                role: Role::Softdep { of: of.to_owned() },
                result: StepResult::Failed {
                    errno: format!("{e:?}"),
                },
            });
            return;
        }
    };
    steps.push(Step {
        module: m.to_owned(),
        role: Role::Softdep { of: of.to_owned() },
        result: StepResult::Kept { reason },
    });
}

/// A dry-run backend: takes facts from `source` once per module and
/// simulates removals (a removed module is no longer loaded, and each module
/// it held loses one reference).
pub struct Simulated<F> {
    source: F,
    cache: HashMap<String, Facts>,
    removed: HashSet<String>,
}

impl<F: FnMut(&str) -> Result<Facts, Errno>> Simulated<F> {
    /// A simulation over `source`.
    pub fn new(source: F) -> Self {
        Simulated {
            source,
            cache: HashMap::new(),
            removed: HashSet::new(),
        }
    }

    fn adjust(&self, f: &mut Facts) {
        let before = f.holders.len();
        f.holders.retain(|h| !self.removed.contains(h));
        let dropped = u32::try_from(before - f.holders.len()).unwrap_or(u32::MAX);
        f.refcnt = f.refcnt.saturating_sub(dropped);
        if self.removed.contains(&f.name) {
            f.state = State::NotLoaded;
            f.refcnt = 0;
        }
    }
}

impl<F: FnMut(&str) -> Result<Facts, Errno>> Backend for Simulated<F> {
    fn facts(&mut self, name: &str) -> Result<Facts, Errno> {
        let mut f = match self.cache.get(name) {
            Some(f) => f.clone(),
            None => {
                let f = (self.source)(name)?;
                self.cache.insert(name.to_owned(), f.clone());
                f
            }
        };
        self.adjust(&mut f);
        Ok(f)
    }

    fn remove(&mut self, name: &str) -> Result<(), Errno> {
        let f = self.facts(name)?;
        if f.state != State::Loaded {
            return Err(Errno::ENOENT);
        }
        self.removed.insert(name.to_owned());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, refcnt: u32, holders: &[&str], deps: &[&str]) -> Facts {
        Facts {
            name: name.into(),
            state: State::Loaded,
            refcnt,
            holders: holders.iter().map(|s| s.to_string()).collect(),
            deps: deps.iter().map(|s| s.to_string()).collect(),
            pre: vec![],
            post: vec![],
            remove_command: None,
        }
    }

    /// xt_state → nf_conntrack → nf_defrag_ipv4/6, libcrc32c; iptable_nat
    /// also holds nf_conntrack in some cases.
    fn graph(extra_holder: bool) -> HashMap<String, Facts> {
        let mut g = HashMap::new();
        let nf_holders: &[&str] = if extra_holder {
            &["xt_state", "nf_nat"]
        } else {
            &["xt_state"]
        };
        g.insert(
            "xt_state".into(),
            m(
                "xt_state",
                0,
                &[],
                &[
                    "nf_conntrack",
                    "nf_defrag_ipv6",
                    "nf_defrag_ipv4",
                    "libcrc32c",
                    "x_tables",
                ],
            ),
        );
        g.insert(
            "nf_conntrack".into(),
            m(
                "nf_conntrack",
                nf_holders.len() as u32,
                nf_holders,
                &["nf_defrag_ipv6", "nf_defrag_ipv4", "libcrc32c"],
            ),
        );
        g.insert(
            "nf_defrag_ipv6".into(),
            m("nf_defrag_ipv6", 1, &["nf_conntrack"], &[]),
        );
        g.insert(
            "nf_defrag_ipv4".into(),
            m("nf_defrag_ipv4", 1, &["nf_conntrack"], &[]),
        );
        g.insert(
            "libcrc32c".into(),
            m("libcrc32c", 1, &["nf_conntrack"], &[]),
        );
        g.insert(
            "x_tables".into(),
            m("x_tables", 2, &["xt_state", "iptable_filter"], &[]),
        );
        g.insert("nf_nat".into(), m("nf_nat", 0, &[], &["nf_conntrack"]));
        let mut b = m("tcp_cubic", 0, &[], &[]);
        b.state = State::Builtin;
        g.insert("tcp_cubic".into(), b);
        g
    }

    fn sim(g: HashMap<String, Facts>) -> Simulated<impl FnMut(&str) -> Result<Facts, Errno>> {
        Simulated::new(move |n: &str| {
            Ok(g.get(n).cloned().unwrap_or(Facts {
                name: n.into(),
                state: State::NotLoaded,
                refcnt: 0,
                holders: vec![],
                deps: vec![],
                pre: vec![],
                post: vec![],
                remove_command: None,
            }))
        })
    }

    fn removed(o: &Outcome) -> Vec<&str> {
        o.steps
            .iter()
            .filter(|s| s.result == StepResult::Removed)
            .map(|s| s.module.as_str())
            .collect()
    }

    #[test]
    fn removes_target_then_unused_dependencies() {
        let mut b = sim(graph(false));
        let o = unload(&mut b, "xt_state", false);
        assert_eq!(o.result, Ok(true));
        // x_tables is still held by iptable_filter.
        assert_eq!(
            removed(&o),
            vec![
                "xt_state",
                "nf_conntrack",
                "nf_defrag_ipv6",
                "nf_defrag_ipv4",
                "libcrc32c"
            ]
        );
        assert_eq!(
            o.steps[1].role,
            Role::UnusedDependency {
                of: "xt_state".into()
            }
        );
    }

    #[test]
    fn dependency_still_held_elsewhere_is_kept() {
        let mut b = sim(graph(true));
        let o = unload(&mut b, "xt_state", false);
        assert_eq!(removed(&o), vec!["xt_state"]);
    }

    #[test]
    fn in_use_names_holders_and_removes_nothing() {
        let mut b = sim(graph(true));
        let o = unload(&mut b, "nf_conntrack", false);
        assert_eq!(
            o.result,
            Err(Refusal::InUse {
                refcnt: 2,
                holders: vec!["xt_state".into(), "nf_nat".into()]
            })
        );
        assert!(o.steps.is_empty());
    }

    #[test]
    fn builtin_and_not_loaded() {
        let mut b = sim(graph(false));
        assert_eq!(
            unload(&mut b, "tcp_cubic", false).result,
            Err(Refusal::Builtin)
        );
        assert_eq!(unload(&mut b, "xt_nope", false).result, Ok(false));
    }

    #[test]
    fn remove_commands_are_never_run() {
        let mut g = graph(false);
        g.get_mut("xt_state").unwrap().remove_command = Some("/bin/true".into());
        let mut b = sim(g.clone());
        assert_eq!(
            unload(&mut b, "xt_state", false).result,
            Err(Refusal::DisabledByPolicy("/bin/true".into()))
        );
        g.get_mut("xt_state").unwrap().remove_command =
            Some("/sbin/rmmod xt_state; echo hi".into());
        let mut b = sim(g.clone());
        assert!(matches!(
            unload(&mut b, "xt_state", false).result,
            Err(Refusal::Command(_))
        ));
        // -i: ignore the command, remove the module itself.
        let mut b = sim(g);
        assert_eq!(unload(&mut b, "xt_state", true).result, Ok(true));
    }

    #[test]
    fn not_loaded_with_a_remove_command_is_not_loaded() {
        for command in ["/bin/true", "/bin/false", "/sbin/rmmod xt_state; echo hi"] {
            let mut g = graph(false);
            let mut facts = g.remove("xt_state").unwrap();
            facts.state = State::NotLoaded;
            facts.refcnt = 0;
            facts.remove_command = Some(command.into());
            g.insert("xt_state".into(), facts);
            for ignore in [false, true] {
                let o = unload(&mut sim(g.clone()), "xt_state", ignore);
                assert_eq!(o.result, Ok(false), "{command} ignore={ignore}");
                assert!(o.steps.is_empty());
            }
        }
        // A softdep that is not loaded is skipped, not "kept".
        let mut g = graph(false);
        g.get_mut("xt_state").unwrap().pre = vec!["gone".into()];
        g.insert(
            "gone".into(),
            Facts {
                state: State::NotLoaded,
                refcnt: 0,
                remove_command: Some("/bin/true".into()),
                ..m("gone", 0, &[], &[])
            },
        );
        let o = unload(&mut sim(g), "xt_state", false);
        assert_eq!(o.result, Ok(true));
        assert!(o.steps.iter().all(|s| s.module != "gone"), "{:?}", o.steps);
    }

    #[test]
    fn softdeps_post_before_pre_after() {
        let mut g = graph(false);
        let x = g.get_mut("xt_state").unwrap();
        x.pre = vec!["pre_a".into(), "pre_b".into()];
        x.post = vec!["post_a".into()];
        for n in ["pre_a", "pre_b", "post_a"] {
            g.insert(n.into(), m(n, 0, &[], &[]));
        }
        g.get_mut("pre_b").unwrap().refcnt = 1;
        let mut b = sim(g);
        let o = unload(&mut b, "xt_state", false);
        let order: Vec<_> = o
            .steps
            .iter()
            .map(|s| (s.module.as_str(), &s.result))
            .collect();
        assert_eq!(order[0], ("post_a", &StepResult::Removed));
        assert_eq!(order[1].0, "xt_state");
        // pre in reverse: pre_b (kept, in use) then pre_a.
        let tail: Vec<_> = order.iter().rev().take(2).map(|(n, _)| *n).collect();
        assert_eq!(tail, vec!["pre_a", "pre_b"]);
        assert!(matches!(
            o.steps.iter().find(|s| s.module == "pre_b").unwrap().result,
            StepResult::Kept { .. }
        ));
    }

    #[test]
    fn policy_commands() {
        assert!(is_policy_command("/bin/true"));
        assert!(is_policy_command(" /bin/false "));
        assert!(!is_policy_command("/bin/true; modprobe x"));
        assert!(!is_policy_command("/sbin/modprobe --ignore-install foo"));
    }
}
