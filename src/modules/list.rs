//! `nfkit modules list`: what the running kernel has (no libkmod).

use serde::Serialize;

use super::error::{ModuleError, Op};
use super::name::{self, ModuleName};
use super::state::ModState;
use super::sysfs;
use crate::system::Host;

/// One module in `nfkit modules list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListedModule {
    /// Module name.
    pub name: String,
    /// Size in bytes (loaded modules).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Reference count (loaded modules).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refcount: Option<u32>,
    /// Modules holding it.
    pub holders: Vec<String>,
    /// `live`, `coming`, `going` or `builtin`.
    pub state: ModState,
}

/// `nfkit modules list` result.
#[derive(Debug, Clone, Serialize)]
pub struct ListReport {
    /// Whether the kernel can load modules (`/proc/modules` exists).
    pub module_support: bool,
    /// False: netfilter modules only.
    pub all: bool,
    /// The modules, sorted by name.
    pub modules: Vec<ListedModule>,
    /// A remark for the reader.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// `nfkit modules list`: /proc/modules, plus built-in modules from
/// /sys/module (directories without `initstate`) and the running release's
/// modules.builtin. Needs no libkmod.
pub fn list(host: &Host, all: bool) -> Result<ListReport, ModuleError> {
    let op = Op::List;
    let proc = sysfs::read_proc_modules(&host.proc_root)
        .map_err(|source| ModuleError::Read { op, source })?;
    let sys = sysfs::read_sys_modules(&host.sys_root).unwrap_or_default();
    let mut modules: Vec<ListedModule> = Vec::new();
    if let Some(p) = &proc {
        modules.extend(p.iter().map(|m| ListedModule {
            name: m.name.clone(),
            size: Some(m.size),
            refcount: Some(m.refcnt),
            holders: m.holders.clone(),
            state: m.state,
        }));
    }
    let mut builtin: Vec<String> = sys
        .iter()
        .filter(|s| s.initstate.is_none())
        .map(|s| s.name.clone())
        .collect();
    if proc.is_some() {
        let rel = host
            .kernel_release()
            .map_err(|source| ModuleError::Read { op, source })?;
        if let Some(rel) = rel {
            let text = host
                .read(
                    &host
                        .root
                        .join("lib/modules")
                        .join(rel)
                        .join("modules.builtin"),
                    crate::read::Kind::ModuleIndex,
                )
                .map_err(|source| ModuleError::Read { op, source })?
                .unwrap_or_default();
            builtin.extend(name::names_in_builtin(&text).map(ModuleName::into_string));
        }
    }
    for b in builtin {
        if !modules.iter().any(|m| m.name == b) {
            modules.push(ListedModule {
                name: b,
                size: None,
                refcount: None,
                holders: Vec::new(),
                state: ModState::Builtin,
            });
        }
    }
    if !all {
        modules.retain(|m| sysfs::is_netfilter(&m.name));
    }
    modules.sort_by(|a, b| a.name.cmp(&b.name));
    let note = if proc.is_none() {
        Some(format!(
            "this kernel has no loadable module support ({} is missing): modules are built in, listed from {}",
            host.proc_root.join("modules").display(),
            host.sys_root.join("module").display()
        ))
    } else {
        None
    };
    Ok(ListReport {
        module_support: proc.is_some(),
        all,
        modules,
        note,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_on_fake_trees() {
        let t = tempfile::tempdir().unwrap();
        let host = Host::offline(t.path());
        // No /proc/modules: built-ins only.
        std::fs::create_dir_all(t.path().join("sys/module/nf_conntrack/parameters")).unwrap();
        std::fs::create_dir_all(t.path().join("sys/module/tcp_cubic/parameters")).unwrap();
        let r = list(&host, false).unwrap();
        assert!(!r.module_support);
        assert_eq!(r.modules.len(), 1);
        assert_eq!(r.modules[0].state, ModState::Builtin);
        assert!(r.note.unwrap().contains("no loadable module support"));
        assert_eq!(list(&host, true).unwrap().modules.len(), 2);
        // With /proc/modules.
        std::fs::create_dir_all(t.path().join("proc")).unwrap();
        std::fs::write(
            t.path().join("proc/modules"),
            "xt_state 16384 1 - Live 0x0\nx_tables 53248 2 xt_state, Live 0x0\nvirtio_net 1 0 - Live 0x0\n",
        )
        .unwrap();
        std::fs::create_dir_all(t.path().join("sys/module/xt_state")).unwrap();
        std::fs::write(t.path().join("sys/module/xt_state/initstate"), "live\n").unwrap();
        let r = list(&host, false).unwrap();
        assert!(r.module_support);
        let names: Vec<_> = r.modules.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, vec!["nf_conntrack", "x_tables", "xt_state"]);
        assert_eq!(r.modules[1].holders, vec!["xt_state"]);
    }
}
