//! One encoding and line-ending policy for every config format nfkit reads
//! (issue 10): bytes that are not UTF-8 in comment lines are harmless and
//! kept byte for byte when nfkit rewrites the file; in any other line they
//! are an error naming file and line, with nothing written. No privileges.

mod support;

use std::fs;
use std::path::Path;
use std::process::Command;

use nfkit::persist::desired::Desired;
use nfkit::persist::import::{self, ImportError, ImportFrom};
use nfkit::persist::import_scope::Scope;
use proptest::prelude::*;
use support::{nfkit, ok, run};

fn write(root: &Path, rel: &str, bytes: &[u8]) {
    let p = root.join(rel.trim_start_matches('/'));
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, bytes).unwrap();
}

fn read(root: &Path, rel: &str) -> Vec<u8> {
    fs::read(root.join(rel.trim_start_matches('/'))).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn with_root(root: &Path) -> Command {
    let mut c = nfkit();
    c.arg("--root").arg(root);
    c
}

fn replace(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let at = hay
        .windows(from.len())
        .position(|w| w == from)
        .unwrap_or_else(|| panic!("{:?} not in {:?}", from, String::from_utf8_lossy(hay)));
    [&hay[..at], to, &hay[at + from.len()..]].concat()
}

/// An EL host (iptables-config) whose sysctl.conf, modprobe.d file and
/// iptables-config carry Latin-1 comments.
fn el_root_with_latin1_comments() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    write(
        r,
        "/etc/sysconfig/iptables-config",
        b"# Modules charg\xe9s au d\xe9marrage\nIPTABLES_MODULES=\"ip_conntrack\"\n  # fin \xff\n",
    );
    write(r, "/etc/sysconfig/iptables", b"*filter\nCOMMIT\n");
    write(
        r,
        "/etc/modprobe.d/local.conf",
        b"# r\xe9glage\noptions nf_conntrack hashsize=4096\n",
    );
    write(
        r,
        "/etc/sysctl.conf",
        b"; r\xe9glages\n# caf\xe9\nnet.netfilter.nf_conntrack_max = 1000\n",
    );
    dir
}

#[test]
fn latin1_comments_are_read_imported_and_kept_byte_for_byte() {
    let dir = el_root_with_latin1_comments();
    let r = dir.path();
    // import sees every file (the modprobe.d options are not dropped).
    let toml = ok(with_root(r).arg("import"));
    assert!(
        toml.contains("hashsize") || toml.contains("buckets = 4096"),
        "{toml}"
    );
    assert!(toml.contains("max = 1000"), "{toml}");
    assert!(
        toml.contains("ip_conntrack") || toml.contains("nf_conntrack"),
        "{toml}"
    );
    write(
        r,
        "/etc/nfkit/nfkit.toml",
        toml.replace("max = 1000", "max = 2000").as_bytes(),
    );
    let conf = read(r, "/etc/sysctl.conf");
    let out = run(with_root(r).arg("apply"));
    assert!(matches!(out.status.code(), Some(0 | 3)), "{out:?}");
    // sysctl.conf: only the value changed; the Latin-1 bytes are kept.
    assert_eq!(
        read(r, "/etc/sysctl.conf"),
        replace(&conf, b"= 1000", b"= 2000")
    );
    // iptables-config: every comment byte kept (the list may be rewritten).
    let after = read(r, "/etc/sysconfig/iptables-config");
    assert!(
        after.starts_with(b"# Modules charg\xe9s au d\xe9marrage\n"),
        "{after:?}"
    );
    assert!(after.ends_with(b"\"\n  # fin \xff\n"), "{after:?}");
    // verify reads the same files and agrees offline on the files.
    let v = run(with_root(r).arg("verify"));
    let text = String::from_utf8_lossy(&v.stderr);
    assert!(!text.contains("UTF-8"), "{v:?}");
}

#[test]
fn non_utf8_in_a_value_is_an_error_naming_file_and_line_and_nothing_is_written() {
    let cases: [(&str, &[u8], &str); 4] = [
        (
            "/etc/sysctl.conf",
            b"# ok\nnet.netfilter.nf_conntrack_max = 1000\nkernel.x = caf\xe9\n",
            "/etc/sysctl.conf:3",
        ),
        (
            "/etc/modprobe.d/local.conf",
            b"# \xe9\noptions nf_conntrack hashsize=40\xff96\n",
            "/etc/modprobe.d/local.conf:2",
        ),
        (
            "/etc/sysconfig/iptables-config",
            b"IPTABLES_MODULES=\"ip_conntrack \xe9\"\n",
            "/etc/sysconfig/iptables-config:1",
        ),
        (
            "/etc/sysctl.d/50-x.conf",
            b"\xff\n",
            "/etc/sysctl.d/50-x.conf:1",
        ),
    ];
    for (file, bytes, at) in cases {
        let dir = el_root_with_latin1_comments();
        let r = dir.path();
        write(r, file, bytes);
        let out = run(with_root(r).arg("import"));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{file}: {out:?}");
        assert!(err.contains(at), "{file}: {err}");
        assert!(err.contains("not UTF-8 outside a comment"), "{file}: {err}");
        // apply stops too and writes nothing.
        write(
            r,
            "/etc/nfkit/nfkit.toml",
            b"[modules]\nload = [\"xt_state\"]\n\n[conntrack]\nmax = 3000\n",
        );
        let before = read(r, file);
        let out = run(with_root(r).arg("apply"));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{file}: {out:?}");
        assert!(err.contains(at), "{file}: {err}");
        assert_eq!(read(r, file), before, "{file}");
        assert!(!r.join("etc/modprobe.d/nfkit.conf").exists(), "{file}");
    }
}

#[test]
fn nfkit_toml_must_be_utf8_and_the_error_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    write(
        r,
        "/etc/nfkit/nfkit.toml",
        b"# ok\n# caf\xe9\n[conntrack]\nmax = 1\n",
    );
    let out = run(with_root(r).arg("verify"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(err.contains("nfkit.toml:2: not valid UTF-8"), "{err}");
}

/// Issue 10: in a CRLF iptables-config the `\r` was part of the value and
/// the rewritten line ended in LF.
#[test]
fn crlf_iptables_config_is_imported_without_the_cr_and_keeps_crlf_when_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    let original: &[u8] = b"# Load additional iptables modules\r\nIPTABLES_MODULES=\"ip_conntrack ipt_state\"\r\nIPTABLES_MODULES_UNLOAD=\"yes\"\r\n";
    write(r, "/etc/sysconfig/iptables-config", original);
    write(r, "/etc/sysconfig/iptables", b"*filter\nCOMMIT\n");
    let toml = ok(with_root(r).arg("import"));
    assert!(!toml.contains('\r'), "{toml:?}");
    assert!(
        toml.contains("ipt_state") || toml.contains("xt_state"),
        "{toml}"
    );
    write(
        r,
        "/etc/nfkit/nfkit.toml",
        b"[modules]\nload = [\"nf_conntrack\", \"xt_state\", \"iptable_nat\"]\n",
    );
    let out = run(with_root(r).arg("apply"));
    assert!(matches!(out.status.code(), Some(0 | 3)), "{out:?}");
    assert_eq!(
        read(r, "/etc/sysconfig/iptables-config"),
        replace(
            original,
            b"ip_conntrack ipt_state",
            b"nf_conntrack xt_state iptable_nat"
        )
    );
    // verify warns that bash, unlike nfkit, keeps the `\r`.
    let out = run(with_root(r).arg("verify"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("/etc/sysconfig/iptables-config:2: IPTABLES_MODULES ends lines with CRLF"),
        "{out:?}"
    );
    // Applying again changes nothing.
    let out = run(with_root(r).args(["apply", "--check"]));
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.ends_with("/etc/sysconfig/iptables-config"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.trim_start().starts_with("unchanged"), "{text}");
}

/// Issue 10: a NUL in IPTABLES_MODULES made `import` print TOML that nfkit
/// then rejected. Now: an error naming file and line, nothing printed.
#[test]
fn a_nul_in_iptables_modules_is_refused_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    write(
        r,
        "/etc/sysconfig/iptables-config",
        b"# x\nIPTABLES_MODULES=\"nf_conntrack xt_\0state\"\n",
    );
    let out = run(with_root(r).arg("import"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(err.contains("/etc/sysconfig/iptables-config:2"), "{err}");
    assert!(err.contains("invalid module name"), "{err}");
}

/// Lines a generated config file is made of: well-formed ones, and ones
/// with a NUL, a CR, a stray `0xff`, a Latin-1 byte, a newline in quotes.
fn fragment() -> impl Strategy<Value = Vec<u8>> {
    let pieces: Vec<&'static [u8]> = vec![
        b"nf_conntrack",
        b"xt_state",
        b"ip_conntrack",
        b"a\0b",
        b"\r",
        b"\xff",
        b"caf\xe9",
        b" ",
        b"\n",
        b"#",
        b";",
        b"=",
        b"\"",
        b"\\",
        b"1",
        b"-",
        b"/",
        b"\t",
    ];
    proptest::collection::vec(proptest::sample::select(pieces), 0..8).prop_map(|p| p.concat())
}

fn file(prefixes: &'static [&'static [u8]]) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        (
            proptest::sample::select(prefixes.to_vec()),
            fragment(),
            any::<bool>(),
        ),
        0..5,
    )
    .prop_map(|lines| {
        lines
            .into_iter()
            .flat_map(|(p, f, crlf)| [p, &f[..], if crlf { b"\r\n" } else { b"\n" }].concat())
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// For any imported input, `import` either fails with a reason or
    /// gives nfkit.toml that `Desired::parse` accepts: it never prints what
    /// nfkit rejects, and never needs the last-resort check to say so.
    #[test]
    fn import_output_is_an_error_or_valid_nfkit_toml(
        ipt in file(&[b"IPTABLES_MODULES=\"", b"IPTABLES_MODULES=", b"# ", b"X=", b""]),
        sysctl in file(&[
            b"net.netfilter.nf_conntrack_max = ",
            b"net.netfilter.nf_conntrack_tcp_timeout_established = ",
            b"net.netfilter.nf_conntrack_",
            b"; ",
            b"",
        ]),
        modprobe in file(&[
            b"options nf_conntrack hashsize=",
            b"options nf_conntrack ",
            b"options ip_conntrack ",
            b"# ",
            b"",
        ]),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        write(r, "/etc/sysconfig/iptables-config", &ipt);
        write(r, "/etc/sysctl.conf", &sysctl);
        write(r, "/etc/modprobe.d/local.conf", &modprobe);
        match import::import(r, ImportFrom::Rhel, Scope::Netfilter, &[]) {
            Ok(imported) => {
                let text = imported.render();
                prop_assert!(Desired::parse("import", &text).is_ok(), "{}", text);
            }
            Err(ImportError::Unrepresentable(e)) => {
                prop_assert!(false, "a value slipped past the checks: {}", e);
            }
            Err(_) => {}
        }
    }
}

/// Issue 10: on an EL6 host a sysctl.conf the reader refused was dropped
/// from verify's next-boot view, so verify agreed while the boot value was
/// the file's. A Latin-1 comment is now read; a Latin-1 value stops verify
/// naming file and line.
#[test]
fn el6_verify_reads_latin1_comments_and_stops_on_a_latin1_value() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    write(r, "/etc/redhat-release", b"CentOS release 6.10 (Final)\n");
    write(r, "/etc/nfkit/nfkit.toml", b"[conntrack]\nmax = 1000\n");
    write(
        r,
        "/etc/sysctl.conf",
        b"# r\xe9glages\nnet.netfilter.nf_conntrack_max = 2000\n",
    );
    let out = run(with_root(r).args(["--json", "verify"]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(text.contains("2000"), "the file's value is seen: {text}");
    write(
        r,
        "/etc/sysctl.conf",
        b"# ok\nnet.netfilter.nf_conntrack_max = 1000 \xe9\n",
    );
    let out = run(with_root(r).arg("verify"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(err.contains("/etc/sysctl.conf:2"), "{err}");
}

/// /etc/modules (Debian without systemd): a Latin-1 comment is kept byte
/// for byte when nfkit adds its block, CRLF lines stay CRLF, and a second
/// apply changes nothing.
#[test]
fn etc_modules_keeps_latin1_comments_and_crlf() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    write(r, "/etc/debian_version", b"12.5\n");
    fs::create_dir_all(r.join("etc/sysctl.d")).unwrap();
    let original: &[u8] = b"# /etc/modules: caf\xe9\r\nloop\r\n";
    write(r, "/etc/modules", original);
    write(
        r,
        "/etc/nfkit/nfkit.toml",
        b"[modules]\nload = [\"xt_state\"]\n",
    );
    let out = run(with_root(r).arg("apply"));
    assert!(matches!(out.status.code(), Some(0 | 3)), "{out:?}");
    let after = read(r, "/etc/modules");
    assert!(
        after.starts_with(original),
        "{:?}",
        String::from_utf8_lossy(&after)
    );
    let added = &after[original.len()..];
    assert!(!added.is_empty() && added.windows(7).any(|w| w == b"xt_stat"));
    // Every line nfkit added ends CRLF, as the file's do.
    let lone_lf = added
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || added[i - 1] != b'\r'));
    assert!(!lone_lf, "{:?}", String::from_utf8_lossy(added));
    let again = run(with_root(r).arg("apply"));
    assert!(matches!(again.status.code(), Some(0 | 3)), "{again:?}");
    assert_eq!(read(r, "/etc/modules"), after);
}
