//! Shared helpers for the root integration tests: a fresh network namespace
//! per test, running nfkit and the real tools (oracles) inside it.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output};

/// Fails loudly when not root: these tests must run, never silently skip.
pub fn require_root() {
    let uid = nix::unistd::geteuid();
    assert!(
        uid.is_root(),
        "this test needs root (it creates network namespaces and talks to netfilter); \
         run the suite as root, as .ci/run does"
    );
}

/// Fails loudly when an oracle tool is missing.
pub fn require_tool(tool: &str) {
    let found = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .any(|dir| std::path::Path::new(dir).join(tool).exists());
    assert!(
        found,
        "oracle tool `{tool}` is missing: install it (.ci/run installs it)"
    );
}

/// Runs `body` on a new thread that has its own, fresh network namespace
/// (with `lo` down, no tables, no conntrack entries). Commands spawned from
/// the body inherit that namespace. The namespace disappears with the thread.
pub fn in_fresh_netns<T: Send + 'static>(body: impl FnOnce() -> T + Send + 'static) -> T {
    require_root();
    let handle = std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .expect("unshare(CLONE_NEWNET) failed: network namespaces are required");
        body()
    });
    match handle.join() {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// The nfkit binary under test.
pub fn nfkit() -> Command {
    Command::new(env!("CARGO_BIN_EXE_nfkit"))
}

/// Runs a command and returns its output; panics if it cannot start.
pub fn run(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"))
}

/// Runs a command that must succeed and returns its stdout.
pub fn ok(command: &mut Command) -> String {
    let output = run(command);
    assert!(
        output.status.success(),
        "{command:?} failed with {}:\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("stdout is not UTF-8")
}

/// A real tool as a command.
pub fn tool<I, S>(name: &str, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    require_tool(name);
    let mut command = Command::new(name);
    command.args(args);
    command
}

/// `nfkit --json ARGS` parsed.
pub fn nfkit_json(args: &[&str]) -> serde_json::Value {
    let text = ok(nfkit().arg("--json").args(args));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("nfkit printed invalid JSON ({e}):\n{text}"))
}

/// Runs nfkit as user `nobody` (uid/gid 65534). The binary is copied to a
/// world-readable place first: the build tree may sit below a directory
/// only root can enter (CI checkouts often do).
pub fn nfkit_as_nobody(args: &[&str]) -> Output {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir for the nobody binary");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod temp dir");
    let binary = dir.path().join("nfkit");
    std::fs::copy(env!("CARGO_BIN_EXE_nfkit"), &binary).expect("copy nfkit for nobody");
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).expect("chmod nfkit");
    let mut command = Command::new(&binary);
    command.args(args).uid(65534).gid(65534).current_dir("/");
    run(&mut command)
}

/// tests/support/spawn-probe.c built as a shared library (once per test
/// binary, with the system's `cc`): `LD_PRELOAD` it into nfkit for
/// `__confinement-test spawn`. Panics (fails loudly) when it cannot be built.
pub fn spawn_probe() -> &'static std::path::Path {
    static PROBE: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    PROBE.get_or_init(|| {
        let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let dir = manifest.join("target/spawn-probe");
        std::fs::create_dir_all(&dir).expect("create target/spawn-probe");
        let out = dir.join(format!("spawn-probe-{}.so", std::process::id()));
        let status = Command::new("cc")
            .args(["-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-o"])
            .arg(&out)
            .arg(manifest.join("tests/support/spawn-probe.c"))
            .status()
            .expect("cannot run cc: a C compiler builds the test's spawn probe (install gcc)");
        assert!(status.success(), "cc failed to build the spawn probe");
        out
    })
}

/// Writes `text` at `rel` (a path as seen inside the root) under `root`,
/// creating directories.
pub fn write(root: &std::path::Path, rel: &str, text: &str) {
    let p = root.join(rel.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().expect("a file path")).unwrap();
    std::fs::write(p, text).unwrap();
}
