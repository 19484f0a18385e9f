//! Which paths a command may write (the Landlock policy), decided after the
//! arguments are parsed. Pure rules ([`grant_for_dir`], [`Writes`]) apart
//! from the look-ups of the tree ([`grants`]).
//!
//! | what | path | rights |
//! |---|---|---|
//! | persistent targets | the directory of each target file of this run (and of nfkit.toml for `--persist`), under the root | [`Rights::FilesIn`] |
//! | a target directory that does not exist yet | its nearest existing ancestor | [`Rights::FilesAndDirsIn`] |
//! | the run lock | `/run/lock/nfkit.lock` if it exists, else its directory | [`Rights::LockFile`] / [`Rights::LockDir`] |
//! | runtime values | `/proc/sys/net/netfilter` (live host only) | [`Rights::KernelValues`] |
//! | an output file (`metrics --textfile PATH`) | PATH's directory, which must exist (never under the root: it is the host's path) | [`Rights::FilesIn`] |
//!
//! Nothing else is writable; nothing at all is executable. nfkit never
//! writes `/sys` (the conntrack hash size is converged through the
//! `nf_conntrack_buckets` sysctl), so `/sys/module/nf_conntrack/parameters`
//! gets no right.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::persist::desired::Target;
use crate::persist::{files, plan};
use crate::system::Host;

/// What a command may change, from its arguments alone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Writes {
    /// The persistent target files (and the run lock).
    pub files: bool,
    /// nfkit.toml itself (`--persist`).
    pub config: bool,
    /// The running kernel's `/proc/sys/net/netfilter` values.
    pub runtime: bool,
}

impl Writes {
    /// Writes nothing (`status`, `verify`, `--check`, `--dry-run`, …).
    pub const NONE: Writes = Writes {
        files: false,
        config: false,
        runtime: false,
    };
    /// `apply`: files, lock, runtime.
    pub const APPLY: Writes = Writes {
        files: true,
        config: false,
        runtime: true,
    };
    /// `--persist`: nfkit.toml, then an apply.
    pub const PERSIST: Writes = Writes {
        files: true,
        config: true,
        runtime: true,
    };
    /// Runtime values only (`boot`, `conntrack set`).
    pub const RUNTIME: Writes = Writes {
        files: false,
        config: false,
        runtime: true,
    };
}

/// Landlock rights of one grant (named sets; see `ruleset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rights {
    /// Replace regular files atomically: create (`MakeReg`), write, rename
    /// over and remove (`RemoveFile`) regular files beneath the directory.
    FilesIn,
    /// [`Rights::FilesIn`] plus `MakeDir`: the nearest existing ancestor of a
    /// target directory that `apply` creates.
    FilesAndDirsIn,
    /// Open the existing lock file for writing.
    LockFile,
    /// Create the lock file (`MakeReg`) and open it for writing.
    LockDir,
    /// Write (and truncate) kernel values beneath the directory.
    KernelValues,
}

/// One path and what may be done beneath it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Grant {
    /// The real path (after following links inside the root).
    pub path: PathBuf,
    /// The rights.
    pub rights: Rights,
}

/// The grant for a directory nfkit writes files in: the directory itself
/// when it exists, else its nearest existing ancestor (which must then also
/// allow `MakeDir`). `exists` tells whether a path is an existing directory.
pub(crate) fn grant_for_dir(dir: &Path, exists: impl Fn(&Path) -> bool) -> Option<Grant> {
    if exists(dir) {
        return Some(Grant {
            path: dir.to_path_buf(),
            rights: Rights::FilesIn,
        });
    }
    dir.ancestors().skip(1).find(|a| exists(a)).map(|a| Grant {
        path: a.to_path_buf(),
        rights: Rights::FilesAndDirsIn,
    })
}

/// Merges grants on the same path (the wider rights win) and keeps order.
pub(crate) fn merge(grants: Vec<Grant>) -> Vec<Grant> {
    let mut out: Vec<Grant> = Vec::new();
    for g in grants {
        match out.iter_mut().find(|o| o.path == g.path) {
            Some(o) if g.rights == Rights::FilesAndDirsIn => o.rights = g.rights,
            Some(_) => {}
            None => out.push(g),
        }
    }
    out
}

/// The files a target writes (paths inside the root).
pub(crate) fn target_files(target: Target) -> &'static [&'static str] {
    match target {
        Target::ModulesLoadD => &[plan::MODULES_LOAD_FILE],
        Target::EtcModules => &[plan::ETC_MODULES],
        Target::ModprobeD => &[plan::MODPROBE_FILE],
        Target::SysctlD => &[plan::SYSCTL_FILE, plan::SYSCTL_FILE_LATE],
        Target::IptablesConfig => &[plan::IPTABLES_CONFIG],
        Target::SysctlConf => &[plan::SYSCTL_CONF],
    }
}

fn is_dir(p: &Path) -> bool {
    p.is_dir()
}

/// The targets of this run: nfkit.toml's `[persist] targets` when it says,
/// else the layout's defaults (what `apply` will use; an unreadable
/// nfkit.toml fails the command before any write, so the defaults are
/// enough then).
fn run_targets(host: &Host, config: &Option<PathBuf>) -> Vec<Target> {
    let layout = plan::detect(&host.root);
    let file = crate::persist::record::config_file(host, config.as_deref());
    let desired = files::read_under(&file.root, &file.path)
        .ok()
        .flatten()
        .and_then(|text| crate::persist::desired::Desired::parse(&file.shown, &text).ok());
    match desired {
        Some(desired) => crate::persist::apply::targets_for(&desired, &layout),
        None => plan::default_targets(&layout),
    }
}

/// The directory of the run lock (the one `files::lock_runs` uses).
fn lock_grant() -> Grant {
    let path = files::lock_path();
    if path.is_file() {
        Grant {
            path,
            rights: Rights::LockFile,
        }
    } else {
        Grant {
            path: path.parent().unwrap_or(Path::new("/tmp")).to_path_buf(),
            rights: Rights::LockDir,
        }
    }
}

/// The grant for a directory a command writes its output file in
/// (`metrics --textfile`): the directory itself, made absolute and with its
/// links followed; none when it does not exist (the write then fails with
/// ENOENT, which names the directory, instead of a Landlock refusal).
pub fn output_grant(dir: &Path) -> Option<Grant> {
    let real = std::fs::canonicalize(dir).ok()?;
    real.is_dir().then_some(Grant {
        path: real,
        rights: Rights::FilesIn,
    })
}

/// Every grant of a command that may change `writes`.
pub fn grants(writes: Writes, host: &Host, config: &Option<PathBuf>) -> Vec<Grant> {
    let mut out = Vec::new();
    let mut dir_of = |root: &Path, path: &Path| {
        let Some(parent) = path.parent() else { return };
        // Links inside the root are followed as the writer does; a path that
        // escapes it gets no grant (the writer refuses it anyway).
        let Ok(real) = files::resolve_under(root, parent) else {
            return;
        };
        if let Some(g) = grant_for_dir(&real, is_dir) {
            out.push(g);
        }
    };
    if writes.files {
        for target in run_targets(host, config) {
            for file in target_files(target) {
                dir_of(&host.root, Path::new(file));
            }
        }
    }
    if writes.config {
        let file = crate::persist::record::config_file(host, config.as_deref());
        dir_of(&file.root, &file.path);
    }
    if writes.files || writes.config {
        out.push(lock_grant());
    }
    if writes.runtime && !host.offline {
        let nf = host.proc_root.join("sys/net/netfilter");
        let path = if nf.is_dir() {
            nf
        } else {
            host.proc_root.join("sys/net")
        };
        out.push(Grant {
            path,
            rights: Rights::KernelValues,
        });
    }
    merge(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_existing_directory_is_granted_itself() {
        let g = grant_for_dir(Path::new("/r/etc/modprobe.d"), |_| true).unwrap();
        assert_eq!(g.path, Path::new("/r/etc/modprobe.d"));
        assert_eq!(g.rights, Rights::FilesIn);
    }

    #[test]
    fn a_missing_directory_grants_its_nearest_existing_ancestor_with_make_dir() {
        let exists = |p: &Path| p == Path::new("/r/etc") || p == Path::new("/r");
        let g = grant_for_dir(Path::new("/r/etc/a/b"), exists).unwrap();
        assert_eq!(g.path, Path::new("/r/etc"));
        assert_eq!(g.rights, Rights::FilesAndDirsIn);
        assert_eq!(grant_for_dir(Path::new("/x/y"), |_| false), None);
    }

    #[test]
    fn merge_keeps_one_grant_per_path_with_the_wider_rights() {
        let g = |p: &str, rights| Grant {
            path: p.into(),
            rights,
        };
        let merged = merge(vec![
            g("/etc", Rights::FilesIn),
            g("/run/lock", Rights::LockDir),
            g("/etc", Rights::FilesAndDirsIn),
            g("/etc", Rights::FilesIn),
        ]);
        assert_eq!(
            merged,
            vec![
                g("/etc", Rights::FilesAndDirsIn),
                g("/run/lock", Rights::LockDir)
            ]
        );
    }

    #[test]
    fn an_output_directory_is_granted_only_when_it_exists() {
        let dir = tempfile::tempdir().unwrap();
        let real = std::fs::canonicalize(dir.path()).unwrap();
        let g = output_grant(&dir.path().join(".")).unwrap();
        assert_eq!(g.path, real);
        assert_eq!(g.rights, Rights::FilesIn);
        assert_eq!(output_grant(&dir.path().join("missing")), None);
        std::fs::write(dir.path().join("f"), "").unwrap();
        assert_eq!(
            output_grant(&dir.path().join("f")),
            None,
            "a file is no directory"
        );
    }

    #[test]
    fn every_target_writes_in_etc() {
        for t in [
            Target::ModulesLoadD,
            Target::EtcModules,
            Target::ModprobeD,
            Target::SysctlD,
            Target::IptablesConfig,
            Target::SysctlConf,
        ] {
            for f in target_files(t) {
                assert!(f.starts_with("/etc/"), "{f}");
            }
        }
    }
}
