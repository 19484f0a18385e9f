//! The module tree and kernel an operation works on, and looking names up
//! in it (libkmod first, `/sys/module` as the fallback on the live system).

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::error::{ModuleError, Op};
use super::name::{self, ModuleName};
use super::{legacy, suggest, sysfs};
use crate::kmod::{Context, Module};
use crate::system::Host;

/// Which module tree and kernel an operation works on.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// File tree root (`/` or `--root`).
    pub root: PathBuf,
    /// Kernel release whose modules are used.
    pub release: String,
    /// `<root>/lib/modules/<release>`.
    pub module_dir: PathBuf,
    /// True when `release` is the running kernel and the tree is the live
    /// system: only then is the kernel's loaded state consulted, and only
    /// then can modules be inserted or removed.
    pub live: bool,
    /// The running kernel's release (live system only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running_release: Option<String>,
    #[serde(skip)]
    pub(crate) proc_root: PathBuf,
    #[serde(skip)]
    pub(crate) sys_root: PathBuf,
    #[serde(skip)]
    config_paths: Option<Vec<PathBuf>>,
    /// Whether module loads are the host's job here (containment facts
    /// read once per run, not once per name).
    #[serde(skip)]
    host_only: std::sync::OnceLock<Option<crate::containment::HostOnly>>,
    /// The modules `/proc/modules` lists as live or coming, read once per
    /// run (`None`: not readable).
    #[serde(skip)]
    in_kernel: std::sync::OnceLock<Option<std::collections::HashSet<String>>>,
}

/// The modprobe.d directories, highest precedence first (libkmod's list:
/// /etc, /run, /usr/local/lib, /usr/lib (kmod ≥ 32), /lib).
const CONFIG_DIRS: [&str; 5] = [
    "/etc/modprobe.d",
    "/run/modprobe.d",
    "/usr/local/lib/modprobe.d",
    "/usr/lib/modprobe.d",
    "/lib/modprobe.d",
];

/// The modprobe.d directories below `root`, highest precedence first.
pub fn config_dirs(root: &Path) -> Vec<PathBuf> {
    CONFIG_DIRS
        .iter()
        .map(|d| root.join(d.trim_start_matches('/')))
        .collect()
}

/// Refuses what libkmod would open in `dirs` and then block on or read
/// without end: an entry (not hidden, not a directory, which libkmod skips)
/// that is neither a regular file nor `/dev/null` (a mask) once links are
/// followed — a FIFO, a socket, another device.
///
/// Under an offline root (`offline_root`), libkmod follows an entry's
/// symlink as the kernel does (an absolute link names the host's file)
/// while nfkit's own readers resolve it inside the root: an entry whose
/// link leads to another file (or to none) the kernel's way is refused, so
/// that nothing of the host's configuration enters an offline run.
pub(crate) fn check_config_dirs(
    dirs: &[PathBuf],
    offline_root: Option<&Path>,
) -> Result<(), crate::read::ReadError> {
    use std::os::unix::fs::FileTypeExt;
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_name().as_encoded_bytes().starts_with(b".") {
                continue;
            }
            let path = entry.path();
            let Ok(meta) = std::fs::metadata(&path) else {
                // Dangling: libkmod skips it; so must the root's view.
                if let Some(root) = offline_root {
                    check_link_stays_inside(root, &path)?;
                }
                continue;
            };
            let ty = meta.file_type();
            let null_mask = ty.is_char_device()
                && std::fs::canonicalize(&path).is_ok_and(|p| p == Path::new("/dev/null"));
            if null_mask {
                continue;
            }
            if ty.is_file() || ty.is_dir() {
                if let Some(root) = offline_root {
                    check_link_stays_inside(root, &path)?;
                }
                continue;
            }
            let what = crate::read::kind_of_file(ty);
            return Err(crate::read::ReadError::NotRegular { path, what });
        }
    }
    Ok(())
}

/// See [`check_config_dirs`]: `path` (below `root`) must name the same
/// file (or none) whether its links are followed the kernel's way or inside
/// `root`.
fn check_link_stays_inside(root: &Path, path: &Path) -> Result<(), crate::read::ReadError> {
    if !std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Ok(());
    }
    let Ok(inner) = path.strip_prefix(root) else {
        return Ok(());
    };
    let kernel_way = std::fs::canonicalize(path).ok();
    let inside = crate::read::resolve_inside(root, &Path::new("/").join(inner))?;
    let inside_way = std::fs::canonicalize(&inside).ok();
    if kernel_way == inside_way {
        return Ok(());
    }
    let detail = match &kernel_way {
        Some(real) => format!(
            "libkmod would read {} instead of {}",
            real.display(),
            inside.display()
        ),
        None => format!(
            "libkmod would find nothing there instead of {}",
            inside.display()
        ),
    };
    Err(crate::read::ReadError::Escapes {
        path: path.to_path_buf(),
        root: root.to_path_buf(),
        detail,
    })
}

impl Target {
    /// Picks the module tree: `release` if given; else the running kernel's
    /// (live system) or, under `--root`, the only release in
    /// `DIR/lib/modules` (or `DIR/proc/sys/kernel/osrelease`).
    pub fn new(host: &Host, release: Option<&str>, op: Op) -> Result<Target, ModuleError> {
        let read_release = || {
            host.kernel_release()
                .map_err(|source| ModuleError::Read { op, source })
        };
        let running = if host.offline {
            None
        } else {
            read_release()?.or_else(|| {
                nix::sys::utsname::uname()
                    .ok()
                    .map(|u| u.release().to_string_lossy().into_owned())
            })
        };
        let release = match release {
            Some(r) => {
                if r.is_empty() || r.contains('/') || r == "." || r == ".." {
                    return Err(ModuleError::Target {
                        op,
                        detail: format!("invalid kernel release {r:?}"),
                    });
                }
                r.to_owned()
            }
            None if !host.offline => running.clone().ok_or_else(|| ModuleError::Target {
                op,
                detail: "cannot tell the running kernel's release (no /proc/sys/kernel/osrelease)"
                    .into(),
            })?,
            None => {
                let rels = sysfs::releases(&host.root);
                let from_proc = if rels.len() == 1 {
                    None
                } else {
                    read_release()?
                };
                match (rels.as_slice(), from_proc) {
                    ([one], _) => one.clone(),
                    (_, Some(r)) if rels.contains(&r) => r,
                    ([], _) => {
                        return Err(ModuleError::Target {
                            op,
                            detail: format!(
                                "no kernel module tree under {}",
                                host.root.join("lib/modules").display()
                            ),
                        });
                    }
                    (many, _) => {
                        return Err(ModuleError::Target {
                            op,
                            detail: format!(
                                "{} holds several kernel releases ({}); pick one with --kernel-release",
                                host.root.join("lib/modules").display(),
                                many.join(", ")
                            ),
                        });
                    }
                }
            }
        };
        let live = !host.offline && running.as_deref() == Some(release.as_str());
        // Offline, the directories libkmod is given are resolved inside
        // the root (an absolute `lib/modules` or `etc/modprobe.d` link in
        // an image names the image's own directory).
        let (module_dir, config_paths) = if host.root == Path::new("/") {
            (Path::new("/lib/modules").join(&release), None)
        } else {
            let inside = |p: &Path| {
                crate::read::resolve_inside(&host.root, p)
                    .map_err(|source| ModuleError::Read { op, source })
            };
            let dirs = CONFIG_DIRS
                .iter()
                .map(|d| inside(Path::new(d)))
                .collect::<Result<Vec<_>, _>>()?;
            (
                inside(&Path::new("/lib/modules").join(&release))?,
                Some(dirs),
            )
        };
        Ok(Target {
            module_dir,
            root: host.root.clone(),
            release,
            live,
            running_release: running,
            proc_root: host.proc_root.clone(),
            sys_root: host.sys_root.clone(),
            config_paths,
            host_only: std::sync::OnceLock::new(),
            in_kernel: std::sync::OnceLock::new(),
        })
    }

    /// The running kernel's loaded modules as libkmod counts them "in the
    /// kernel" (live or coming; built-ins come from the index), from one
    /// read of `/proc/modules` per run instead of an `initstate` open and
    /// a `/sys/module` stat per module of every load sequence. `None`
    /// offline or when `/proc/modules` cannot be read.
    pub(crate) fn loaded_snapshot(&self) -> Option<&std::collections::HashSet<String>> {
        self.in_kernel
            .get_or_init(|| {
                if !self.live {
                    return None;
                }
                let modules = super::sysfs::read_proc_modules(&self.proc_root).ok()??;
                Some(
                    modules
                        .into_iter()
                        .filter(|m| {
                            matches!(
                                m.state,
                                super::state::ModState::Live | super::state::ModState::Coming
                            )
                        })
                        .map(|m| m.name)
                        .collect(),
                )
            })
            .as_ref()
    }

    /// [`crate::containment::module_load_preflight`], read once.
    pub(crate) fn module_loads_host_only(&self) -> Option<crate::containment::HostOnly> {
        *self
            .host_only
            .get_or_init(|| crate::containment::module_load_preflight(&self.proc_root))
    }

    pub(crate) fn context(&self, op: Op) -> Result<Context, ModuleError> {
        // libkmod follows the indexes' offsets unchecked: a damaged one
        // would crash it.
        super::index::check_tree(&self.module_dir)
            .map_err(|(path, detail)| ModuleError::DamagedIndex { op, path, detail })?;
        // libkmod reads the modprobe.d files itself (the default list when
        // `config_paths` is None: the same directories under `/`).
        let dirs = match &self.config_paths {
            Some(dirs) => dirs.clone(),
            None => config_dirs(Path::new("/")),
        };
        let offline_root = self.config_paths.as_ref().map(|_| self.root.as_path());
        check_config_dirs(&dirs, offline_root)
            .map_err(|source| ModuleError::Read { op, source })?;
        let ctx = Context::new(Some(&self.module_dir), self.config_paths.as_deref()).map_err(
            |source| ModuleError::Kmod {
                op,
                module: String::new(),
                source,
            },
        )?;
        // Missing indexes are not fatal here: lookups then find nothing and
        // the "not found" error explains the missing module directory.
        let _ = ctx.load_resources();
        Ok(ctx)
    }

    pub(crate) fn require_live(&self, op: Op, module: &str) -> Result<(), ModuleError> {
        if self.live {
            return Ok(());
        }
        Err(ModuleError::Target {
            op,
            detail: format!(
                "{module}: cannot change the kernel: {} is not the running kernel{} (use --dry-run)",
                self.release,
                if self.root == Path::new("/") {
                    String::new()
                } else {
                    format!(" (--root {} is an offline tree)", self.root.display())
                }
            ),
        })
    }
}

fn not_found(t: &Target, op: Op, given: &str, resolved: &[String]) -> ModuleError {
    let known = sysfs::known_module_names(&t.module_dir);
    let norm = ModuleName::canonical(given);
    let mut suggestions = suggest::closest(norm.as_str(), known.iter().map(String::as_str), 3);
    let legacy = legacy::lookup(given);
    if let Some(r) = legacy.and_then(legacy::LegacyName::replacement) {
        if known.iter().any(|k| k == r) && !suggestions.iter().any(|s| s == r) {
            suggestions.insert(0, r.to_owned());
        }
    }
    ModuleError::NotFound {
        op,
        name: given.to_owned(),
        dir: t.module_dir.clone(),
        suggestions,
        legacy: legacy.map(|l| l.note(resolved)),
    }
}

/// Looks a name up. Names that libkmod cannot resolve because the module
/// directory is missing (kernels without modules, like many VMs and
/// containers) fall back to `/sys/module/<name>` on the live system.
pub(crate) fn lookup<'c>(
    ctx: &'c Context,
    t: &Target,
    op: Op,
    given: &str,
) -> Result<Vec<Module<'c>>, ModuleError> {
    name::validate(given).map_err(|problem| ModuleError::InvalidName {
        op,
        name: given.to_owned(),
        problem,
    })?;
    match ctx.lookup(given) {
        Ok(list) if !list.is_empty() => return Ok(list.modules()),
        Ok(_) => {}
        // kmod 28 (Debian 11) fails the lookup with ENOSYS when the module
        // directory has no indexes (a container without
        // /lib/modules/<release>); newer libkmod finds nothing. Both mean
        // "not in a tree": /sys/module below still satisfies a loaded or
        // built-in module (issue 14 §6, vm-tests `restricted` on 5.10).
        Err(e) if no_tree_enosys(t, &e) => {}
        Err(source) => {
            return Err(ModuleError::Kmod {
                op,
                module: given.to_owned(),
                source,
            });
        }
    }
    if t.live {
        let norm = ModuleName::canonical(given);
        let candidate = if sysfs::in_sysfs(&t.sys_root, norm.as_str()) {
            Some(norm.into_string())
        } else {
            legacy::lookup(given)
                .and_then(legacy::LegacyName::replacement)
                .filter(|r| sysfs::in_sysfs(&t.sys_root, r))
                .map(str::to_owned)
        };
        if let Some(c) = candidate {
            if let Ok(m) = ctx.module(&c) {
                return Ok(vec![m]);
            }
        }
    }
    Err(not_found(t, op, given, &[]))
}

/// A lookup's ENOSYS from an old libkmod over a tree without indexes.
fn no_tree_enosys(t: &Target, e: &crate::kmod::Error) -> bool {
    e.errno() == Some(nix::errno::Errno::ENOSYS) && !t.module_dir.join("modules.dep.bin").exists()
}

/// libkmod's log over one operation: every line (priority, function,
/// message), shown under `-v`, and the messages logged while one item was
/// handled, attached to that item's error.
#[derive(Debug, Default)]
pub(crate) struct KmodLog {
    all: Vec<String>,
}

impl KmodLog {
    /// Takes what libkmod logged since the last call: keeps the full lines,
    /// returns the messages.
    pub(crate) fn take(&mut self, ctx: &Context) -> Vec<String> {
        let lines = ctx.take_log();
        self.all.extend(lines.iter().map(ToString::to_string));
        lines.into_iter().map(|l| l.message).collect()
    }

    /// Adds lines another context logged (a load's worker contexts).
    pub(crate) fn extend(&mut self, lines: &[crate::kmod::LogLine]) {
        self.all.extend(lines.iter().map(ToString::to_string));
    }

    /// Every line taken, in order (what was logged after the last
    /// [`Self::take`] is taken now).
    pub(crate) fn finish(mut self, ctx: &Context) -> Vec<String> {
        self.take(ctx);
        self.all
    }
}

/// Built-in fallback for a module libkmod does not know: a `/sys/module`
/// directory without `initstate` is a built-in module.
pub(crate) fn sysfs_builtin(t: &Target, m: &Module<'_>) -> bool {
    t.live
        && m.path().is_none()
        && sysfs::read_sys_module(&t.sys_root, &m.name()).is_some_and(|s| s.initstate.is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_picks_the_only_release_offline() {
        let t = tempfile::tempdir().unwrap();
        let host = Host::offline(t.path());
        assert_eq!(
            Target::new(&host, None, Op::Resolve).unwrap_err().kind(),
            "target"
        );
        std::fs::create_dir_all(t.path().join("lib/modules/6.1.0-9-amd64")).unwrap();
        let tg = Target::new(&host, None, Op::Resolve).unwrap();
        assert_eq!(tg.release, "6.1.0-9-amd64");
        assert!(!tg.live);
        assert_eq!(
            tg.config_paths.as_ref().unwrap()[0],
            t.path().join("etc/modprobe.d")
        );
        std::fs::create_dir_all(t.path().join("lib/modules/6.12.0-1-amd64")).unwrap();
        let e = Target::new(&host, None, Op::Resolve).unwrap_err();
        assert!(e.to_string().contains("--kernel-release"), "{e}");
        assert_eq!(
            Target::new(&host, Some("6.12.0-1-amd64"), Op::Resolve)
                .unwrap()
                .release,
            "6.12.0-1-amd64"
        );
        assert!(Target::new(&host, Some("../x"), Op::Resolve).is_err());
    }

    /// A failed libkmod call's log line goes to the item's error (message
    /// only, JSON `libkmod`) and to the `-v` log (priority and function too).
    #[test]
    fn libkmod_log_reaches_errors_and_the_verbose_log() {
        let tmp = tempfile::tempdir().unwrap();
        let ctx = Context::new(Some(tmp.path()), Some(&[tmp.path().join("modprobe.d")])).unwrap();
        let mut log = KmodLog::default();
        assert!(log.take(&ctx).is_empty());
        // Fails on every host (ENOENT, ENOSYS or EPERM) and changes nothing.
        let _ = ctx.module("nfkit_test_no_such_module").unwrap().remove(0);
        let lines = log.take(&ctx);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].starts_with("could not remove "), "{lines:?}");
        let info = crate::modules::error::ErrorInfo::from(&ModuleError::Target {
            op: Op::Unload,
            detail: "x".into(),
        });
        let json = serde_json::to_value(&info).unwrap();
        assert!(json.get("libkmod").is_none(), "absent when empty: {json}");
        let json = serde_json::to_value(info.with_libkmod(lines.clone())).unwrap();
        assert_eq!(json["libkmod"], serde_json::json!(lines));
        let all = log.finish(&ctx);
        assert_eq!(
            all,
            vec![format!("error: kmod_module_remove_module: {}", lines[0])]
        );
    }
}
