//! Reads that must end and read the right thing (issue 10): FIFOs,
//! devices, directories, escaping symlinks, huge files and damaged module
//! indexes get a clear error naming the path and exit 1, with nothing
//! written. Every run has a 10 s limit, so a hang fails instead of blocking.

mod support;
#[path = "support/tree.rs"]
mod tree;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Runs nfkit with `args`; panics when it runs longer than 10 s or dies of
/// a signal. Returns (exit code, stderr).
fn nfkit_limited(args: &[&str], root: &Path) -> (i32, String) {
    let (code, _, err) = nfkit_limited_out(args, root);
    (code, err)
}

/// [`nfkit_limited`] with stdout: (exit code, stdout, stderr).
fn nfkit_limited_out(args: &[&str], root: &Path) -> (i32, String, String) {
    let out_file = tempfile::tempfile().unwrap();
    let mut child = support::nfkit()
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out_file.try_clone().unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("nfkit {args:?} did not finish within 10 s (hang)");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    let code = status
        .code()
        .unwrap_or_else(|| panic!("nfkit {args:?} was killed by a signal: {status:?}\n{err}"));
    let mut out = String::new();
    let mut f = out_file;
    std::io::Seek::rewind(&mut f).unwrap();
    std::io::Read::read_to_string(&mut f, &mut out).unwrap();
    (code, out, err)
}

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
}

fn fifo(path: &Path) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
}

/// A Debian-with-systemd image with a valid nfkit.toml.
fn image() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    write(r, "lib/systemd/systemd", "");
    fs::create_dir_all(r.join("sbin")).unwrap();
    symlink("/lib/systemd/systemd", r.join("sbin/init")).unwrap();
    write(r, "etc/debian_version", "12.5\n");
    for d in ["etc/modules-load.d", "etc/modprobe.d", "etc/sysctl.d"] {
        fs::create_dir_all(r.join(d)).unwrap();
    }
    write(
        r,
        "etc/nfkit/nfkit.toml",
        "[modules]\nload = [\"xt_state\"]\n\n[conntrack]\nmax = 500000\n",
    );
    dir
}

/// Every regular file under `root` with its contents.
fn snapshot(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap().flatten() {
            let ty = e.file_type().unwrap();
            if ty.is_dir() {
                stack.push(e.path());
            } else if ty.is_file() {
                out.push((e.path(), fs::read(e.path()).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// `args` fail with exit 1, an error naming `needle` and `what`, and
/// nothing under the root changes.
fn refused(root: &Path, args: &[&str], needle: &str, what: &str) {
    let before = snapshot(root);
    let (code, err) = nfkit_limited(args, root);
    assert_eq!(code, 1, "nfkit {args:?}: {err}");
    assert!(
        err.contains(needle) && err.contains(what),
        "nfkit {args:?}: {err}"
    );
    assert_eq!(snapshot(root), before, "nfkit {args:?} changed files");
}

#[test]
fn fifo_as_nfkit_toml_is_refused() {
    let img = image();
    let f = fs::File::create(img.path().join("etc/modprobe.d/huge.conf")).unwrap();
    f.set_len(5 << 20).unwrap();
    refused(img.path(), &["import"], "huge.conf", "larger than");
    fs::remove_file(img.path().join("etc/modprobe.d/huge.conf")).unwrap();
    let toml = img.path().join("etc/nfkit/nfkit.toml");
    fs::remove_file(&toml).unwrap();
    fifo(&toml);
    for args in [&["apply"][..], &["apply", "--check"], &["verify"]] {
        refused(img.path(), args, "nfkit.toml", "FIFO");
    }
}

#[test]
fn fifo_in_conf_dirs_is_refused() {
    for dir in ["etc/sysctl.d", "etc/modprobe.d", "etc/modules-load.d"] {
        let img = image();
        fifo(&img.path().join(dir).join("50-pipe.conf"));
        if dir == "etc/sysctl.d" {
            // apply reads the other sysctl.d files to place its own.
            refused(img.path(), &["apply"], "50-pipe.conf", "FIFO");
        }
        refused(img.path(), &["import"], "50-pipe.conf", "FIFO");
        // An unreadable config file stops verify too, naming it (issue 10:
        // one error scheme).
        refused(img.path(), &["verify"], "50-pipe.conf", "FIFO");
    }
    // Not a *.conf name: ignored, as systemd and libkmod ignore it.
    let img = image();
    fifo(&img.path().join("etc/sysctl.d/README"));
    let (code, err) = nfkit_limited(&["apply"], img.path());
    assert_eq!(code, 0, "{err}");
}

#[test]
fn fifo_as_imported_file_is_refused() {
    let img = image();
    fifo(&img.path().join("etc/modules"));
    refused(img.path(), &["import"], "etc/modules", "FIFO");
}

#[test]
fn fifo_in_offline_proc_is_refused() {
    let img = image();
    write(img.path(), "proc/modules", "");
    fifo(&img.path().join("proc/sys/kernel/osrelease"));
    refused(img.path(), &["status"], "osrelease", "FIFO");
    refused(img.path(), &["modules", "list"], "osrelease", "FIFO");
}

#[test]
fn dev_zero_behind_an_offline_proc_link_is_never_read() {
    let img = image();
    let kernel = img.path().join("proc/sys/kernel");
    fs::create_dir_all(&kernel).unwrap();
    write(img.path(), "proc/modules", "");
    // Climbing out of the root: refused.
    symlink(
        "../../../../../../../../../../dev/zero",
        kernel.join("osrelease"),
    )
    .unwrap();
    refused(img.path(), &["status"], "osrelease", "outside");
    // Absolute: taken inside the root, as for /etc (DIR/dev/zero).
    fs::remove_file(kernel.join("osrelease")).unwrap();
    symlink("/dev/zero", kernel.join("osrelease")).unwrap();
    write(img.path(), "dev/zero", "6.1.0-image\n");
    let (code, err) = nfkit_limited(&["--json", "status"], img.path());
    assert_eq!(code, 0, "{err}");
    // A directory inside the root where the value should be: refused.
    fs::remove_file(img.path().join("dev/zero")).unwrap();
    fs::create_dir(img.path().join("dev/zero")).unwrap();
    refused(img.path(), &["status"], "dev/zero", "directory");
}

#[test]
fn a_huge_config_file_hits_the_size_cap() {
    let img = image();
    let toml = fs::OpenOptions::new()
        .append(true)
        .open(img.path().join("etc/nfkit/nfkit.toml"))
        .unwrap();
    toml.set_len(5 << 20).unwrap();
    refused(img.path(), &["apply"], "nfkit.toml", "larger than");
}

/// A root holding a copy of the fixture's module directory (indexes
/// copied, everything else linked), and the path of its `name` index.
fn tree_copy(name: &str) -> (tempfile::TempDir, PathBuf) {
    let t = tree::kernel_tree();
    let src = t.root.join("lib/modules").join(&t.release);
    let dir = tempfile::tempdir().unwrap();
    let dst = dir.path().join("lib/modules").join(&t.release);
    fs::create_dir_all(&dst).unwrap();
    for e in fs::read_dir(&src).unwrap().flatten() {
        let file = e.file_name();
        if file.to_string_lossy().starts_with("modules.") && e.file_type().unwrap().is_file() {
            fs::copy(e.path(), dst.join(&file)).unwrap();
        } else {
            symlink(e.path(), dst.join(&file)).unwrap();
        }
    }
    let path = dst.join(name);
    (dir, path)
}

#[test]
fn damaged_module_indexes_are_named_not_crashed_on() {
    for (name, damage) in [
        ("modules.dep.bin", "truncate"),
        ("modules.dep.bin", "garbage"),
        ("modules.alias.bin", "truncate"),
        ("modules.symbols.bin", "short"),
    ] {
        let (dir, target) = tree_copy(name);
        let bytes = fs::read(&target).unwrap();
        match damage {
            "truncate" => fs::write(&target, &bytes[..bytes.len() / 2]).unwrap(),
            "short" => fs::write(&target, &bytes[..5]).unwrap(),
            _ => fs::write(&target, vec![0xa5u8; bytes.len()]).unwrap(),
        }
        let (code, err) = nfkit_limited(&["modules", "resolve", "nf_conntrack"], dir.path());
        assert_eq!(code, 1, "{name} {damage}: {err}");
        assert!(
            err.contains(name) && err.contains("damaged"),
            "{name} {damage}: {err}"
        );
        assert!(err.contains("depmod"), "the hint names the fix: {err}");
    }
    // The sound tree resolves.
    let (dir, _) = tree_copy("modules.dep.bin");
    let (code, err) = nfkit_limited(&["modules", "resolve", "nf_conntrack"], dir.path());
    assert_eq!(code, 0, "{err}");
    // An empty index is no entries, as libkmod and modprobe read it (kmod
    // 28's depmod writes an empty modules.builtin.alias.bin; the modprobe
    // oracle for that case is tests/modules_tree.rs).
    let (dir, target) = tree_copy("modules.symbols.bin");
    fs::write(&target, b"").unwrap();
    let (code, err) = nfkit_limited(&["modules", "resolve", "nf_conntrack"], dir.path());
    assert_eq!(code, 0, "an empty modules.symbols.bin: {err}");
}

/// Whatever the damage, nfkit ends by itself (0 when the walk finds the
/// index sound, 1 naming the file otherwise), never by a signal: generated
/// truncations and byte changes of the real modules.dep.bin.
#[test]
fn no_damage_to_modules_dep_bin_crashes_nfkit() {
    let (dir, target) = tree_copy("modules.dep.bin");
    let sound = fs::read(&target).unwrap();
    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut refused_count = 0;
    for case in 0..40 {
        let mut bytes = sound.clone();
        if case % 2 == 0 {
            bytes.truncate((next() % sound.len() as u64) as usize);
        } else {
            for _ in 0..1 + next() % 8 {
                let at = (next() % sound.len() as u64) as usize;
                bytes[at] = next() as u8;
            }
        }
        fs::write(&target, &bytes).unwrap();
        let (code, err) = nfkit_limited(&["modules", "resolve", "nf_conntrack"], dir.path());
        assert!(code == 0 || code == 1, "case {case}: exit {code}: {err}");
        if code == 1 && err.contains("damaged") {
            assert!(err.contains("modules.dep.bin"), "case {case}: {err}");
            refused_count += 1;
        }
    }
    // Every truncation is refused, at least.
    assert!(refused_count >= 20, "only {refused_count} of 40 refused");
}

/// libkmod reads modprobe.d itself: a FIFO or an endless device there is
/// refused before it is handed the tree; a `/dev/null` mask is fine.
#[test]
fn modprobe_d_fifos_and_devices_do_not_reach_libkmod() {
    let (dir, _) = tree_copy("modules.dep.bin");
    let conf = dir.path().join("etc/modprobe.d");
    fs::create_dir_all(&conf).unwrap();
    symlink("/dev/null", conf.join("masked.conf")).unwrap();
    let (code, err) = nfkit_limited(&["modules", "resolve", "nf_conntrack"], dir.path());
    assert_eq!(code, 0, "{err}");
    fifo(&conf.join("pipe.conf"));
    let (code, err) = nfkit_limited(&["modules", "resolve", "nf_conntrack"], dir.path());
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("pipe.conf") && err.contains("FIFO"), "{err}");
    fs::remove_file(conf.join("pipe.conf")).unwrap();
    symlink("/dev/zero", conf.join("zero.conf")).unwrap();
    let (code, err) = nfkit_limited(&["modules", "resolve", "nf_conntrack"], dir.path());
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("zero.conf") && err.contains("character device"),
        "{err}"
    );
}

/// Under `--root`, libkmod follows a modprobe.d link the kernel's way: an
/// absolute link would hand it the host's file (or none) while nfkit's own
/// readers take the image's. Such a link is refused, naming it; a relative
/// link inside the image and an absolute one to `/dev/null` (a mask) are
/// fine.
#[test]
fn offline_modprobe_d_links_never_reach_the_hosts_files() {
    let (dir, _) = tree_copy("modules.dep.bin");
    let conf = dir.path().join("etc/modprobe.d");
    fs::create_dir_all(&conf).unwrap();
    fs::create_dir_all(dir.path().join("etc/site")).unwrap();
    write(
        dir.path(),
        "etc/site/ct.conf",
        "options nf_conntrack hashsize=4096\n",
    );
    symlink("../site/ct.conf", conf.join("ct.conf")).unwrap();
    symlink("/dev/null", conf.join("masked.conf")).unwrap();
    let (code, err) = nfkit_limited(&["modules", "resolve", "nf_conntrack"], dir.path());
    assert_eq!(code, 0, "{err}");

    // The same file named by an absolute path: inside the image it is
    // etc/site/ct.conf, the kernel's way it is the host's /etc/site/ct.conf
    // (absent here).
    assert!(!Path::new("/etc/site/ct.conf").exists());
    fs::remove_file(conf.join("ct.conf")).unwrap();
    symlink("/etc/site/ct.conf", conf.join("ct.conf")).unwrap();
    let (code, err) = nfkit_limited(&["modules", "resolve", "nf_conntrack"], dir.path());
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("ct.conf") && err.contains("libkmod"), "{err}");

    // A host file the image does not have: libkmod would read it.
    fs::remove_file(conf.join("ct.conf")).unwrap();
    let host = tempfile::NamedTempFile::new().unwrap();
    fs::write(host.path(), "options nf_conntrack hashsize=8192\n").unwrap();
    symlink(host.path(), conf.join("host.conf")).unwrap();
    let (code, err) = nfkit_limited(&["modules", "resolve", "nf_conntrack"], dir.path());
    assert_eq!(code, 1, "{err}");
    let named = host.path().display().to_string();
    assert!(err.contains("host.conf") && err.contains(&named), "{err}");
    fs::remove_file(conf.join("host.conf")).unwrap();
    write(
        dir.path(),
        "etc/modprobe.d/ct.conf",
        "options nf_conntrack hashsize=4096\n",
    );

    // An absolute link for the whole directory names the image's own.
    fs::rename(&conf, dir.path().join("etc/modprobe.real")).unwrap();
    symlink("/etc/modprobe.real", &conf).unwrap();
    let (code, out, err) = nfkit_limited_out(&["modules", "resolve", "nf_conntrack"], dir.path());
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("hashsize=4096"),
        "the image's options were not read:\n{out}"
    );
}
