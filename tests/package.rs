//! The Debian package (`contrib/debian/build`), the man pages and the
//! completion scripts, checked with the real tools: `dpkg-deb` (contents,
//! control fields, conffiles), `lintian` (no error), `man --warnings -l`
//! (every page renders without a warning) and bash (`complete -p`,
//! completing a subcommand and module names). Root (the build installs its
//! tools through tests/support/packages.sh); tests/setup installs lintian
//! and man-db: a missing tool fails these tests.
//!
//! The package built here wraps the test build of nfkit (`--binary`); the
//! release package (`target/debian/nfkit_VERSION_amd64.deb`, the portable
//! binary inside) is built by tests/all and checked by the `#[ignore]`d
//! test at the end (`cargo test --test package -- --ignored`).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use support::*;

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Builds the package around the test binary once per test process.
fn test_package() -> &'static Path {
    static DEB: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, deb) = DEB.get_or_init(|| {
        require_root();
        let out = tempfile::tempdir().unwrap();
        let printed = ok(Command::new(repo().join("contrib/debian/build"))
            .arg("--binary")
            .arg(env!("CARGO_BIN_EXE_nfkit"))
            .arg("--out")
            .arg(out.path()));
        let deb = PathBuf::from(printed.trim());
        assert_eq!(
            deb,
            out.path().join(format!("nfkit_{VERSION}_amd64.deb")),
            "the build prints the package's path"
        );
        (out, deb)
    });
    deb
}

/// The package's files (`dpkg-deb -c`), as absolute paths.
fn contents(deb: &Path) -> Vec<String> {
    ok(&mut tool("dpkg-deb", [Path::new("-c"), deb]))
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(|p| p.trim_start_matches('.').trim_end_matches('/').to_owned())
        .collect()
}

fn field(deb: &Path, name: &str) -> String {
    ok(&mut tool(
        "dpkg-deb",
        ["-f".as_ref(), deb.as_os_str(), name.as_ref()],
    ))
    .trim()
    .to_owned()
}

/// Everything the package must hold, and only as its conffile the init
/// script.
fn assert_package_shape(deb: &Path) {
    let files = contents(deb);
    let mut wanted: Vec<String> = [
        "/usr/sbin/nfkit",
        "/usr/share/bash-completion/completions/nfkit",
        "/usr/share/zsh/vendor-completions/_nfkit",
        "/usr/share/fish/vendor_completions.d/nfkit.fish",
        "/usr/lib/systemd/system/nfkit-boot.service",
        "/etc/init.d/nfkit",
        "/etc/nfkit",
        "/usr/share/doc/nfkit/copyright",
        "/usr/share/doc/nfkit/changelog.Debian.gz",
        "/usr/share/doc/nfkit/examples/nfkit.toml",
        "/usr/share/man/man5/nfkit.toml.5.gz",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    // One page per visible command, as the binary lists them.
    let pages = ok(nfkit().args(["__gen", "man"]));
    for page in pages.lines().filter(|p| p.ends_with(".8")) {
        wanted.push(format!("/usr/share/man/man8/{page}.gz"));
    }
    for w in &wanted {
        assert!(files.contains(w), "{} lacks {w}: {files:#?}", deb.display());
    }
    assert!(
        !files.iter().any(|f| f == "/etc/nfkit/nfkit.toml"),
        "nfkit.toml is the admin's (nfkit writes it): not in the package"
    );
    assert_eq!(field(deb, "Package"), "nfkit");
    assert_eq!(field(deb, "Version"), format!("{VERSION}-1"));
    assert_eq!(field(deb, "Architecture"), "amd64");
    assert_eq!(field(deb, "Recommends"), "libkmod2");
    assert!(field(deb, "Depends").starts_with("libc6 (>= 2."));
    let info = ok(&mut tool(
        "dpkg-deb",
        [Path::new("-I"), deb, Path::new("conffiles")],
    ));
    assert_eq!(info.trim(), "/etc/init.d/nfkit");
    let md5 = ok(&mut tool(
        "dpkg-deb",
        [Path::new("-I"), deb, Path::new("md5sums")],
    ));
    assert!(md5.contains("usr/sbin/nfkit"), "{md5}");
    // No maintainer scripts: nothing is enabled or started at install.
    let control = ok(&mut tool("dpkg-deb", [Path::new("-I"), deb]));
    for script in ["postinst", "prerm", "postrm", "preinst"] {
        assert!(!control.contains(script), "{control}");
    }
}

/// lintian's tags at error level (must be none).
fn assert_lintian_clean(deb: &Path) {
    let output = run(&mut tool("lintian", [deb]));
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("E: ")).collect();
    assert!(errors.is_empty(), "lintian errors:\n{text}");
    // Every warning left is one the README explains (its "Install" table).
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    for line in text.lines().filter(|l| l.starts_with("W: ")) {
        let tag = line.split_whitespace().nth(2).unwrap_or(line);
        assert!(
            readme.contains(&format!("| `{tag}` |")),
            "lintian warning {tag} is not explained in README.md's Install section:\n{text}"
        );
    }
    assert!(
        output.status.success(),
        "lintian failed ({}):\n{text}",
        output.status
    );
}

#[test]
fn package_holds_binary_pages_completions_units_and_docs() {
    assert_package_shape(test_package());
}

#[test]
fn lintian_finds_no_error() {
    assert_lintian_clean(test_package());
}

#[test]
fn the_description_says_which_binary_is_inside() {
    let description = field(test_package(), "Description");
    assert!(
        description.contains("the binary given to contrib/debian/build --binary"),
        "{description}"
    );
}

#[test]
fn the_example_config_is_valid() {
    let path = repo().join("contrib/debian/nfkit.toml.example");
    let text = std::fs::read_to_string(&path).unwrap();
    nfkit::persist::desired::Desired::parse(&path.display().to_string(), &text)
        .expect("the packaged example parses and validates");
}

#[test]
fn every_man_page_renders_without_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let pages = ok(nfkit().args(["__gen", "man"]));
    assert!(pages.lines().count() >= 10, "{pages}");
    for page in pages.lines() {
        let path = dir.path().join(page);
        std::fs::write(&path, ok(nfkit().args(["__gen", "man", page]))).unwrap();
        let mut man = tool("man", ["--warnings", "-l"]);
        man.arg(&path)
            .env("MANWIDTH", "80")
            .env("MAN_KEEP_FORMATTING", "0");
        let output = run(&mut man);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "man -l {page}: {stderr}");
        assert!(
            stderr.trim().is_empty(),
            "man --warnings -l {page}:\n{stderr}"
        );
        // Overstrike (`N\bN` for bold) when man keeps formatting: undo it.
        let mut text = String::new();
        for c in String::from_utf8_lossy(&output.stdout).chars() {
            if c == '\u{8}' {
                text.pop();
            } else {
                text.push(c);
            }
        }
        for section in ["NAME", "SYNOPSIS", "EXAMPLES", "SEE ALSO"] {
            assert!(
                text.contains(section),
                "{page} renders no {section}: {text}"
            );
        }
        if page.ends_with(".8") {
            assert!(
                text.contains("EXIT STATUS") && text.contains("FILES"),
                "{page}"
            );
        }
    }
}

#[test]
fn an_unknown_page_is_a_clear_error() {
    let output = run(nfkit().args(["__gen", "man", "nfkit-nosuch.8"]));
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("nfkit-nosuch.8: no such page"), "{stderr}");
    assert!(stderr.contains("hint: the pages are: nfkit.8"), "{stderr}");
}

/// A fake module tree with three loadable modules and one built-in.
fn module_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    write(
        root.path(),
        "lib/modules/6.1.0-test/modules.dep",
        "kernel/net/netfilter/nf_conntrack.ko.xz:\n\
         kernel/net/netfilter/nf-nat.ko:\n\
         kernel/net/netfilter/xt_state.ko.xz: kernel/net/netfilter/nf_conntrack.ko.xz\n",
    );
    write(
        root.path(),
        "lib/modules/6.1.0-test/modules.builtin",
        "kernel/net/netfilter/nf_tables.ko\n",
    );
    std::fs::create_dir_all(root.path().join("etc")).unwrap();
    root
}

#[test]
fn complete_modules_lists_the_tree_by_prefix() {
    let root = module_root();
    let names = ok(nfkit()
        .arg("--root")
        .arg(root.path())
        .args(["__complete-modules", "nf-"]));
    assert_eq!(names, "nf_conntrack\nnf_nat\nnf_tables\n");
    let missing = run(nfkit().arg("--root").arg(root.path()).args([
        "__complete-modules",
        "--kernel-release",
        "9.9",
    ]));
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("has no modules.dep"));
}

/// Runs `script` in bash with the generated completion loaded and a `nfkit`
/// on PATH that answers module names from the fake tree.
fn bash_with_completion(script: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let completion = dir.path().join("nfkit.bash");
    std::fs::write(
        &completion,
        ok(nfkit().args(["__gen", "completion", "bash"])),
    )
    .unwrap();
    let root = module_root();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::fs::write(
        bin.join("nfkit"),
        format!(
            "#!/bin/sh\nexec {} --root {} \"$@\"\n",
            env!("CARGO_BIN_EXE_nfkit"),
            root.path().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        bin.join("nfkit"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    ok(tool("bash", ["-c"])
        .arg(format!("source {}\n{script}", completion.display()))
        .env("PATH", path))
}

/// `COMPREPLY` after completing the words (the last one is being typed).
fn complete(words: &[&str]) -> Vec<String> {
    let array: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let script = format!(
        "COMP_WORDS=({})\nCOMP_CWORD={}\nCOMP_LINE=\"${{COMP_WORDS[*]}}\"\nCOMP_POINT=${{#COMP_LINE}}\n\
         \"$(complete -p nfkit | sed 's/.*-F \\([^ ]*\\) .*/\\1/')\" nfkit \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        array.join(" "),
        words.len() - 1
    );
    bash_with_completion(&script)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn bash_completion_is_registered() {
    let spec = bash_with_completion("complete -p nfkit");
    assert!(spec.contains("-F _nfkit_modules_or_clap"), "{spec}");
    assert!(spec.trim_end().ends_with(" nfkit"), "{spec}");
}

#[test]
fn bash_completes_subcommands() {
    assert_eq!(complete(&["nfkit", "ap"]), vec!["apply"]);
    assert_eq!(complete(&["nfkit", "modules", "un"]), vec!["unload"]);
    // compgen over the same word list clap offers.
    let words = complete(&["nfkit", ""]);
    for w in ["status", "apply", "verify", "modules", "boot"] {
        assert!(words.iter().any(|x| x == w), "{w} in {words:?}");
    }
    assert!(!words.iter().any(|x| x.starts_with("__")), "{words:?}");
}

#[test]
fn bash_completes_module_names_from_the_tree() {
    assert_eq!(
        complete(&["nfkit", "modules", "load", "nf_c"]),
        vec!["nf_conntrack"]
    );
    assert_eq!(
        complete(&["nfkit", "-v", "modules", "resolve", "xt"]),
        vec!["xt_state"]
    );
    // Flags still complete through clap.
    assert!(complete(&["nfkit", "modules", "load", "--dry"]).contains(&"--dry-run".to_owned()));
}

#[test]
#[ignore = "needs contrib/build-portable then contrib/debian/build (tests/all runs them)"]
fn release_package_has_the_portable_binary_and_passes_lintian() {
    let deb = repo().join(format!("target/debian/nfkit_{VERSION}_amd64.deb"));
    assert!(
        deb.exists(),
        "{} is missing: run contrib/build-portable and contrib/debian/build",
        deb.display()
    );
    assert_package_shape(&deb);
    assert_lintian_clean(&deb);
    let description = field(&deb, "Description");
    assert!(description.contains("the portable build"), "{description}");
    assert_eq!(field(&deb, "Depends"), "libc6 (>= 2.17)");
}
