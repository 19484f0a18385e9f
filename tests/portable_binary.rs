//! The portable release binaries (`contrib/build-portable --arch all`):
//! `target/portable/{x86_64,aarch64}/nfkit` must start on any Linux with
//! glibc >= 2.17 (EL7), so the highest `GLIBC_` symbol version they need is
//! at most 2.17; they keep the project's link shape (non-PIE, full RELRO)
//! and need nothing but glibc's own libraries (libkmod is loaded at run
//! time). The ELF facts come from `support/elf.rs`, checked against
//! `readelf` (binutils) as the oracle.
//!
//! The tests on the portable binaries are `#[ignore]`d here because they
//! need that build (minutes, Zig from PyPI): `tests/all` builds it and runs
//! them with `cargo test --test portable_binary -- --ignored`; a missing
//! binary fails them. The tests on cargo's own build run everywhere: the
//! negative control (this machine's glibc is newer than 2.17, so the check
//! must refuse cargo's build) and the reader against readelf.

#[path = "support/elf.rs"]
mod elf;
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::*;

/// The oldest glibc the portable binaries must start on (EL7).
const GLIBC_CEILING: [u32; 2] = [2, 17];

/// Libraries a portable binary may need: glibc's own (libdl and libpthread
/// are separate libraries before 2.34; the loader itself) and GCC's unwinder
/// (libgcc_s, in every glibc system's minimal install; cargo's unwinding
/// builds need it, the release's `panic = "abort"` does not).
const SYSTEM_LIBRARIES: &[&str] = &[
    "libc.so.6",
    "libdl.so.2",
    "libpthread.so.0",
    "libm.so.6",
    "librt.so.1",
    "ld-linux-x86-64.so.2",
    "ld-linux-aarch64.so.1",
    "libgcc_s.so.1",
];

#[derive(Clone, Copy, Debug)]
enum Arch {
    X86_64,
    Aarch64,
}

impl Arch {
    fn dir(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }
    fn machine(self) -> u16 {
        match self {
            Arch::X86_64 => elf::EM_X86_64,
            Arch::Aarch64 => elf::EM_AARCH64,
        }
    }
    /// glibc's dynamic loader path on this architecture.
    fn interpreter(self) -> &'static str {
        match self {
            Arch::X86_64 => "/lib64/ld-linux-x86-64.so.2",
            Arch::Aarch64 => "/lib/ld-linux-aarch64.so.1",
        }
    }
}

/// `target/portable/ARCH/nfkit`; panics with the command to run when the
/// build is missing.
fn portable_binary(arch: Arch) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/portable")
        .join(arch.dir())
        .join("nfkit");
    assert!(
        path.is_file(),
        "the portable binary {} is missing: build it with `contrib/build-portable --arch all` \
         (tests/all does this before running these tests)",
        path.display()
    );
    path
}

fn facts(path: &Path) -> elf::ElfFacts {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    elf::read(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every problem that keeps `path` from being the portable binary for
/// `arch`; empty when it is one.
fn portability_problems(path: &Path, arch: Arch) -> Vec<String> {
    let facts = facts(path);
    let mut problems = Vec::new();
    match elf::highest_glibc(&facts.version_needs) {
        Err(e) => problems.push(e),
        Ok(None) => problems
            .push("needs no GLIBC_ symbol version at all (not linked against glibc?)".into()),
        Ok(Some((version, name))) if version.as_slice() > GLIBC_CEILING.as_slice() => {
            let symbols: Vec<_> = facts
                .version_needs
                .iter()
                .filter(|n| {
                    elf::glibc_version(&n.version)
                        .is_some_and(|v| v.as_slice() > GLIBC_CEILING.as_slice())
                })
                .map(|n| n.version.as_str())
                .collect();
            problems.push(format!(
                "needs {name} (versions above GLIBC_{}.{}: {})",
                GLIBC_CEILING[0],
                GLIBC_CEILING[1],
                symbols.join(", ")
            ));
        }
        Ok(Some(_)) => {}
    }
    if facts.machine != arch.machine() {
        problems.push(format!(
            "machine {} is not {:?}'s {}",
            facts.machine,
            arch,
            arch.machine()
        ));
    }
    if facts.file_type != elf::ET_EXEC {
        problems.push(format!(
            "ELF type {} is not ET_EXEC: the binary is position-independent (build.rs links -no-pie)",
            facts.file_type
        ));
    }
    if !(facts.has_relro && facts.bind_now) {
        problems.push(format!(
            "not full RELRO (PT_GNU_RELRO: {}, BIND_NOW: {})",
            facts.has_relro, facts.bind_now
        ));
    }
    if facts.interpreter.as_deref() != Some(arch.interpreter()) {
        problems.push(format!(
            "interpreter {:?} is not glibc's {}",
            facts.interpreter,
            arch.interpreter()
        ));
    }
    for library in &facts.needed {
        if !SYSTEM_LIBRARIES.contains(&library.as_str()) {
            problems.push(format!(
                "needs {library}, which not every glibc system has (load it at run time, as libkmod is)"
            ));
        }
    }
    problems
}

/// `readelf`'s view of the version needs and NEEDED libraries: the oracle.
fn readelf_view(path: &Path) -> (Vec<elf::VersionNeed>, Vec<String>) {
    let versions = ok(tool("readelf", ["--version-info", "--wide"]).arg(path));
    let mut needs = Vec::new();
    let mut in_needs = false;
    let mut file = String::new();
    for line in versions.lines() {
        if line.starts_with("Version needs section") {
            in_needs = true;
            continue;
        }
        if line.starts_with("Version ") {
            in_needs = false;
        }
        if !in_needs {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        if let Some(i) = words.iter().position(|w| *w == "File:") {
            file = words[i + 1].to_string();
        } else if let Some(i) = words.iter().position(|w| *w == "Name:") {
            needs.push(elf::VersionNeed {
                file: file.clone(),
                version: words[i + 1].to_string(),
            });
        }
    }
    needs.sort();
    let dynamic = ok(tool("readelf", ["--dynamic", "--wide"]).arg(path));
    let needed = dynamic
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .map(|l| {
            let start = l.find('[').expect("[library]") + 1;
            let end = l.rfind(']').expect("[library]");
            l[start..end].to_string()
        })
        .collect();
    (needs, needed)
}

fn assert_reader_agrees_with_readelf(path: &Path) {
    let ours = facts(path);
    let (needs, needed) = readelf_view(path);
    assert!(
        !needs.is_empty(),
        "readelf found no version needs in {}",
        path.display()
    );
    assert_eq!(
        ours.version_needs,
        needs,
        "version needs of {}: ours vs readelf",
        path.display()
    );
    assert_eq!(
        ours.needed,
        needed,
        "NEEDED of {}: ours vs readelf",
        path.display()
    );
}

fn cargo_build() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_nfkit"))
}

#[test]
fn reader_agrees_with_readelf_on_cargo_build() {
    assert_reader_agrees_with_readelf(cargo_build());
}

/// Negative control: cargo's own build links this machine's glibc (2.34 or
/// newer: `__libc_start_main@GLIBC_2.34`), so the check must refuse it, and
/// for that reason only (it is non-PIE with full RELRO like the release).
#[test]
fn check_refuses_cargo_build_for_its_glibc() {
    let arch = if cfg!(target_arch = "aarch64") {
        Arch::Aarch64
    } else {
        Arch::X86_64
    };
    let problems = portability_problems(cargo_build(), arch);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(
        problems[0].starts_with("needs GLIBC_2.")
            && problems[0].contains("versions above GLIBC_2.17"),
        "{problems:#?}"
    );
}

#[test]
fn glibc_versions_order_numerically() {
    let need = |v: &str| elf::VersionNeed {
        file: "libc.so.6".into(),
        version: v.into(),
    };
    let needs = [
        need("GLIBC_2.3.4"),
        need("GLIBC_2.17"),
        need("GLIBC_2.2.5"),
        need("GCC_3.0"),
    ];
    let (version, name) = elf::highest_glibc(&needs).unwrap().unwrap();
    assert_eq!((version, name.as_str()), (vec![2, 17], "GLIBC_2.17"));
    let (_, name) = elf::highest_glibc(&[need("GLIBC_2.9"), need("GLIBC_2.10")])
        .unwrap()
        .unwrap();
    assert_eq!(name, "GLIBC_2.10");
    assert!(elf::highest_glibc(&[need("GLIBC_PRIVATE")]).is_err());
    assert_eq!(elf::highest_glibc(&[need("GCC_3.0")]).unwrap(), None);
}

fn assert_portable(arch: Arch) {
    let path = portable_binary(arch);
    let problems = portability_problems(&path, arch);
    assert!(
        problems.is_empty(),
        "{} is not portable to glibc 2.17:\n  {}",
        path.display(),
        problems.join("\n  ")
    );
    assert_reader_agrees_with_readelf(&path);
}

#[test]
#[ignore = "needs contrib/build-portable (tests/all runs it)"]
fn portable_x86_64_needs_glibc_2_17_at_most() {
    assert_portable(Arch::X86_64);
}

#[test]
#[ignore = "needs contrib/build-portable (tests/all runs it)"]
fn portable_aarch64_needs_glibc_2_17_at_most() {
    assert_portable(Arch::Aarch64);
}

/// The portable x86_64 binary runs here and says what cargo's build says:
/// `--version`, `status --json` in a fresh network namespace, and a live
/// `modules resolve` (libkmod opened with dlopen, which the 2.17 link takes
/// from libdl: glibc's loader log shows libkmod initialised).
#[test]
#[ignore = "needs contrib/build-portable (tests/all runs it)"]
fn portable_x86_64_runs_like_cargo_build() {
    let portable = portable_binary(Arch::X86_64);
    let version = ok(Command::new(&portable).arg("--version"));
    assert_eq!(
        version.trim(),
        format!("nfkit {}", env!("CARGO_PKG_VERSION"))
    );

    let (ours, theirs) = in_fresh_netns(move || {
        let ours = ok(Command::new(&portable).args(["--json", "status"]));
        let theirs = ok(nfkit().args(["--json", "status"]));
        let resolve_ours = run(Command::new(&portable)
            .args(["modules", "resolve", "nf_conntrack"])
            .env("LD_DEBUG", "libs"));
        let resolve_theirs = run(nfkit().args(["modules", "resolve", "nf_conntrack"]));
        ((ours, resolve_ours), (theirs, resolve_theirs))
    });
    let parse = |text: &str| -> serde_json::Value {
        serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("status printed invalid JSON ({e}):\n{text}"))
    };
    let status = parse(&ours.0);
    assert_eq!(
        status,
        parse(&theirs.0),
        "status --json: portable vs cargo build"
    );
    assert_eq!(status["network_namespace"]["initial"], false, "{status:#}");

    let (resolve_ours, resolve_theirs) = (ours.1, theirs.1);
    assert_eq!(resolve_ours.status.code(), resolve_theirs.status.code());
    assert_eq!(
        String::from_utf8_lossy(&resolve_ours.stdout),
        String::from_utf8_lossy(&resolve_theirs.stdout),
        "modules resolve: portable vs cargo build"
    );
    let loader_log = String::from_utf8_lossy(&resolve_ours.stderr);
    assert!(
        loader_log
            .lines()
            .any(|l| l.contains("calling init:") && l.contains("libkmod.so.2")),
        "the portable binary did not load libkmod (LD_DEBUG=libs):\n{loader_log}"
    );
}
