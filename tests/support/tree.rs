//! The kernel-tree fixture for module host tests. Tests may run tools (the product never does).
#![allow(dead_code, reason = "each test binary uses a subset")]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// A real kernel module tree prepared by `tests/support/kernel-tree`.
#[derive(Debug, Clone)]
pub struct KernelTree {
    pub root: PathBuf,
    pub release: String,
}

/// Runs `tests/support/kernel-tree` once per test binary. Panics (fails the
/// test loudly) when the fixture cannot be had: never a silent skip.
pub fn kernel_tree() -> &'static KernelTree {
    static TREE: OnceLock<KernelTree> = OnceLock::new();
    TREE.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/kernel-tree");
        let out = Command::new("bash")
            .arg(&script)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "FIXTURE UNAVAILABLE: {} failed ({}):\n{}{}",
            script.display(),
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
        let field = |k: &str| {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .unwrap_or_else(|| panic!("kernel-tree printed no {k}: {stdout}"))
                .to_owned()
        };
        KernelTree {
            root: PathBuf::from(field("root=")),
            release: field("release="),
        }
    })
}

impl KernelTree {
    pub fn moddir(&self) -> PathBuf {
        self.root.join("lib/modules").join(&self.release)
    }
}

impl KernelTree {
    /// Puts the tree's `lib/` into `root` as hard links (one `cp -al`, no
    /// data copied; a plain copy when `root` is on another filesystem).
    /// A symlink to the tree would not do: under `--root`, nfkit resolves
    /// an absolute link inside the root, as the image would.
    pub fn install_into(&self, root: &Path) {
        std::fs::create_dir_all(root).unwrap();
        for flags in ["-al", "-a"] {
            let status = Command::new("cp")
                .arg(flags)
                .arg(self.root.join("lib"))
                .arg(root)
                .status()
                .expect("cannot run cp");
            if status.success() {
                return;
            }
            let _ = std::fs::remove_dir_all(root.join("lib"));
        }
        panic!(
            "cannot copy {} into {}",
            self.root.display(),
            root.display()
        );
    }
}

/// A root that shares the fixture's lib/ but has its own
/// etc/modprobe.d/test.conf.
pub struct Overlay {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
}

/// The fixture's lib/ under a new root with `conf` as its only modprobe.d
/// file.
pub fn overlay(conf: &str) -> Overlay {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    kernel_tree().install_into(&root);
    std::fs::create_dir_all(root.join("etc/modprobe.d")).unwrap();
    std::fs::write(root.join("etc/modprobe.d/test.conf"), conf).unwrap();
    Overlay { _dir: dir, root }
}

/// The reason of `kind` in the first module of an `explain` report (JSON);
/// panics with the report when there is none.
pub fn explain_reason<'a>(v: &'a serde_json::Value, kind: &str) -> &'a serde_json::Value {
    v["results"][0]["modules"][0]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} reason: {v:#}"))
}
