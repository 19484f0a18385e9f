//! Writing configuration files safely (I/O).
//!
//! - Every write is atomic: a temporary file in the same directory, written,
//!   given the old file's mode and owner (0644 root:root for new files),
//!   `fsync`ed, renamed over the target, then the directory is `fsync`ed. A
//!   crash leaves the old file or the new one, never a mix; on any error the
//!   temporary file is removed.
//! - Paths are resolved under a root (`/` or `--root DIR`) component by
//!   component: symlinks are followed only while they stay inside the root
//!   (an absolute link target is taken relative to the root, as it would be
//!   inside the image), so a write can never land outside it. A symlinked
//!   file (Debian's `/etc/modules-load.d/modules.conf → ../modules`) is
//!   written through: the link stays, its target changes.
//! - One lock (`flock` on `/run/lock/nfkit.lock`) serialises concurrent runs.
//!   The held lock ([`RunLock`]) is also the capability to write: every write,
//!   removal or directory creation is a method of it, so code that has not
//!   taken the lock — a dry run, `apply --check` — cannot write (and does not
//!   even create the lock file).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// Errors of file operations: operation, path, cause.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// An I/O call failed.
    #[error("{op} {}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A symlink points outside the root.
    #[error("refusing {}: a symlink in the path leads outside {} ({})", path.display(), root.display(), detail)]
    Escapes {
        path: PathBuf,
        root: PathBuf,
        detail: String,
    },
    /// Reading a file failed (see [`crate::read`]).
    #[error(transparent)]
    Read(#[from] crate::read::ReadError),
}

impl FileError {
    fn io(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> FileError + use<> {
        let path = path.to_path_buf();
        move |source| FileError::Io { op, path, source }
    }
}
impl crate::error::Hint for FileError {
    /// A hint for the user.
    fn hint(&self) -> Option<std::borrow::Cow<'static, str>> {
        match self {
            FileError::Io { op, source, .. } => {
                // Reads and writes fail for different reasons.
                let read = matches!(*op, "read" | "read link" | "inspect" | "resolve symlink");
                match (read, source.raw_os_error()) {
                    (true, Some(libc::EACCES | libc::EPERM)) => {
                        Some("nfkit cannot read the file: check its permissions (or run as root)")
                    }
                    (false, Some(libc::EACCES)) if crate::confine::writes_confined() => {
                        Some(crate::confine::REFUSED_WRITE_HINT)
                    }
                    (false, Some(libc::EACCES | libc::EPERM)) => {
                        Some("writing system configuration needs root")
                    }
                    (_, Some(libc::EISDIR)) => {
                        Some("a directory stands where a file is expected: remove or rename it")
                    }
                    (_, Some(libc::ENOTDIR)) => {
                        Some("a file stands where the path needs a directory")
                    }
                    (_, Some(libc::ELOOP)) => Some("a symlink loop: fix or remove the link"),
                    (false, Some(libc::EROFS)) => Some("the file system is read-only"),
                    (false, Some(libc::ENOSPC)) => Some("the file system is full"),
                    _ => None,
                }
            }
            FileError::Escapes { .. } => {
                Some("fix or remove the symlink; nfkit never follows links out of --root")
            }
            // Transparent: the same layer, so its hint is this one.
            FileError::Read(e) => return crate::error::Hint::hint(e),
        }
        .map(std::borrow::Cow::Borrowed)
    }
}

/// Resolves `path` (absolute, as seen from inside the root) to a real path
/// under `root`, following symlinks only inside the root. Missing trailing
/// components are fine (the file may not exist yet).
pub fn resolve_under(root: &Path, path: &Path) -> Result<PathBuf, FileError> {
    if root == Path::new("/") {
        // Nothing can lead outside `/`: let the kernel resolve the path when
        // it is used (one system call instead of one per component).
        return Ok(path.to_path_buf());
    }
    let escape = |detail: String| FileError::Escapes {
        path: path.to_path_buf(),
        root: root.to_path_buf(),
        detail,
    };
    let mut pending: Vec<std::ffi::OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .rev()
        .collect();
    let mut resolved: Vec<std::ffi::OsString> = Vec::new();
    let mut hops = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            if resolved.pop().is_none() {
                return Err(escape("`..` above the root".into()));
            }
            continue;
        }
        let candidate: PathBuf = root.join(resolved.iter().collect::<PathBuf>()).join(&part);
        match fs::symlink_metadata(&candidate) {
            Ok(meta) if meta.file_type().is_symlink() => {
                hops += 1;
                if hops > 40 {
                    return Err(escape("too many symlinks".into()));
                }
                let target =
                    fs::read_link(&candidate).map_err(FileError::io("read link", &candidate))?;
                if target.is_absolute() {
                    resolved.clear();
                }
                let mut parts: Vec<std::ffi::OsString> = target
                    .components()
                    .filter_map(|c| match c {
                        Component::Normal(n) => Some(n.to_os_string()),
                        Component::ParentDir => Some("..".into()),
                        _ => None,
                    })
                    .collect();
                parts.reverse();
                pending.extend(parts);
            }
            _ => resolved.push(part),
        }
    }
    Ok(root.join(resolved.iter().collect::<PathBuf>()))
}

/// Reads a configuration file under the root; `Ok(None)` when it does not
/// exist. Regular files only, at most [`Kind::Config`](crate::read::Kind)
/// bytes (see [`crate::read`]). Bytes that are not UTF-8 may stand in
/// comment lines only ([`crate::read::read_config`]); write the text back
/// with [`crate::lossless::encode`].
pub fn read_under(root: &Path, path: &Path) -> Result<Option<String>, FileError> {
    Ok(crate::read::read_config(root, path)?)
}

/// Reads nfkit.toml under the root: as [`read_under`], but the whole file
/// must be UTF-8 (TOML requires it).
pub fn read_toml_under(root: &Path, path: &Path) -> Result<Option<String>, FileError> {
    Ok(crate::read::read_text(
        root,
        path,
        crate::read::Kind::Config,
    )?)
}

/// [`RunLock::write_atomic`] without the lock, for this crate's unit tests.
#[cfg(test)]
pub(crate) fn write_atomic(
    root: &Path,
    path: &Path,
    contents: &[u8],
) -> Result<PathBuf, FileError> {
    write_atomic_unlocked(root, path, contents)
}

fn write_atomic_unlocked(root: &Path, path: &Path, contents: &[u8]) -> Result<PathBuf, FileError> {
    let mut real = resolve_under(root, path)?;
    // Write through a symlinked file (its target changes, the link stays):
    // renaming over the link would replace it.
    if fs::symlink_metadata(&real).is_ok_and(|m| m.file_type().is_symlink()) {
        real = fs::canonicalize(&real).map_err(FileError::io("resolve symlink", &real))?;
    }
    let dir = real.parent().unwrap_or(root).to_path_buf();
    let name = real
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (mode, owner) = match fs::metadata(&real) {
        Ok(meta) => (
            meta.permissions().mode() & 0o7777,
            Some((meta.uid(), meta.gid())),
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => (0o644, None),
        Err(e) => return Err(FileError::io("inspect", &real)(e)),
    };
    let temp = dir.join(format!(".{name}.nfkit-{}.tmp", nix::unistd::getpid()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&temp)
            .map_err(FileError::io("create temporary file", &temp))?;
        file.write_all(contents)
            .map_err(FileError::io("write", &temp))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(&file, Some(uid), Some(gid))
                .map_err(FileError::io("keep owner of", &temp))?;
        }
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(FileError::io("keep mode of", &temp))?;
        file.sync_all().map_err(FileError::io("fsync", &temp))?;
        fs::rename(&temp, &real).map_err(FileError::io("rename into place", &real))?;
        sync_dir(&dir)?;
        Ok(real.clone())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// Makes the entries of `dir` durable (`fsync` on the directory).
fn sync_dir(dir: &Path) -> Result<(), FileError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(FileError::io("fsync directory", dir))
}

/// [`RunLock::remove_stale_temporaries`] without the lock, for unit tests.
#[cfg(test)]
pub(crate) fn remove_stale_temporaries(dir: &Path) -> Vec<PathBuf> {
    remove_stale_temporaries_unlocked(dir)
}

fn remove_stale_temporaries_unlocked(dir: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return removed;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_suffix(".tmp")
            .and_then(|n| n.rsplit_once(".nfkit-"))
            .filter(|(head, _)| head.starts_with('.'))
            .and_then(|(_, pid)| pid.parse::<i32>().ok())
        else {
            continue;
        };
        let alive = Path::new("/proc").join(pid.to_string()).exists();
        if !alive && fs::remove_file(entry.path()).is_ok() {
            removed.push(entry.path());
        }
    }
    removed
}

/// The held run lock, released on drop; the one way to write files.
pub struct RunLock {
    _lock: nix::fcntl::Flock<File>,
}

impl RunLock {
    /// Atomically replaces (or creates) `path` under `root` with `contents`.
    /// The parent directory must exist. Returns the real path written.
    pub fn write_atomic(
        &self,
        root: &Path,
        path: &Path,
        contents: &[u8],
    ) -> Result<PathBuf, FileError> {
        write_atomic_unlocked(root, path, contents)
    }

    /// Removes `path` under `root` (a missing file is fine), durably: the
    /// directory is `fsync`ed after the unlink (without it a power cut after
    /// apply reported success could bring the file back; found by the
    /// powercut VM trial).
    pub fn remove(&self, root: &Path, path: &Path) -> Result<(), FileError> {
        let real = resolve_under(root, path)?;
        match fs::remove_file(&real) {
            Ok(()) => sync_dir(real.parent().unwrap_or(root)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(FileError::io("remove", &real)(e)),
        }
    }

    /// Creates directory `dir` under `root` (0755, with its parents) when
    /// missing; each new directory's parent is `fsync`ed, so the entries
    /// are as durable as the files written into them.
    pub fn create_dir_all(&self, root: &Path, dir: &Path) -> Result<(), FileError> {
        let real = resolve_under(root, dir)?;
        if real.is_dir() {
            return Ok(());
        }
        let mut missing: Vec<&Path> = real.ancestors().take_while(|d| !d.is_dir()).collect();
        fs::create_dir_all(&real).map_err(FileError::io("create directory", &real))?;
        missing.reverse();
        for created in missing {
            sync_dir(created.parent().unwrap_or(root))?;
        }
        Ok(())
    }

    /// Removes temporary files left in `dir` by an nfkit run that was killed
    /// (`.NAME.nfkit-PID.tmp` whose PID no longer runs). Returns what it
    /// removed.
    pub fn remove_stale_temporaries(&self, dir: &Path) -> Vec<PathBuf> {
        remove_stale_temporaries_unlocked(dir)
    }
}

/// The run lock's path: `nfkit.lock` in the first of `/run/lock`, `/run`,
/// `/tmp` that exists.
pub fn lock_path() -> PathBuf {
    let dir = ["/run/lock", "/run", "/tmp"]
        .iter()
        .map(Path::new)
        .find(|d| d.is_dir())
        .unwrap_or(Path::new("/tmp"));
    dir.join("nfkit.lock")
}

/// Takes the run lock, waiting for a concurrent nfkit run to finish.
pub fn lock_runs() -> Result<RunLock, FileError> {
    let path = lock_path();
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(FileError::io("open lock", &path))?;
    let lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, errno)| FileError::io("lock", &path)(io::Error::from(errno)))?;
    Ok(RunLock { _lock: lock })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn writes_atomically_keeping_mode() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("etc/sysconfig")).unwrap();
        let file = root.path().join("etc/sysconfig/iptables-config");
        fs::write(&file, "old\n").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
        write_atomic(
            root.path(),
            Path::new("/etc/sysconfig/iptables-config"),
            b"new\n",
        )
        .unwrap();
        assert_eq!(fs::read_to_string(&file).unwrap(), "new\n");
        assert_eq!(
            fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // New files get 0644; no temporary file is left behind.
        write_atomic(root.path(), Path::new("/etc/sysconfig/new"), b"x").unwrap();
        assert_eq!(
            fs::metadata(root.path().join("etc/sysconfig/new"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o644
        );
        let leftovers: Vec<_> = fs::read_dir(root.path().join("etc/sysconfig"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .contains("nfkit-")
            })
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn symlinks_inside_the_root_are_followed_and_kept() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("etc/modules-load.d")).unwrap();
        fs::write(root.path().join("etc/modules"), "loop\n").unwrap();
        symlink(
            "../modules",
            root.path().join("etc/modules-load.d/modules.conf"),
        )
        .unwrap();
        let real = write_atomic(
            root.path(),
            Path::new("/etc/modules-load.d/modules.conf"),
            b"x\n",
        )
        .unwrap();
        assert_eq!(real, root.path().join("etc/modules"));
        assert!(
            fs::symlink_metadata(root.path().join("etc/modules-load.d/modules.conf"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(
            fs::read_to_string(root.path().join("etc/modules")).unwrap(),
            "x\n"
        );
        // An absolute link target is taken inside the root.
        symlink("/etc/modules", root.path().join("etc/abs")).unwrap();
        assert_eq!(
            resolve_under(root.path(), Path::new("/etc/abs")).unwrap(),
            root.path().join("etc/modules")
        );
    }

    #[test]
    fn live_root_writes_through_symlinks_too() {
        // With root `/` the kernel resolves paths; a symlinked file is still
        // written through, not replaced.
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("target"), "old").unwrap();
        symlink(dir.path().join("target"), dir.path().join("link")).unwrap();
        let real = write_atomic(Path::new("/"), &dir.path().join("link"), b"new").unwrap();
        assert_eq!(real, fs::canonicalize(dir.path().join("target")).unwrap());
        assert!(
            fs::symlink_metadata(dir.path().join("link"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(
            fs::read_to_string(dir.path().join("target")).unwrap(),
            "new"
        );
    }

    #[test]
    fn escaping_links_are_refused() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("etc")).unwrap();
        symlink("../../../../../../../../tmp", root.path().join("etc/out")).unwrap();
        let err = write_atomic(root.path(), Path::new("/etc/out/x"), b"x").unwrap_err();
        assert!(matches!(err, FileError::Escapes { .. }), "{err}");
        assert!(resolve_under(root.path(), Path::new("/../x")).is_err());
    }

    #[test]
    fn missing_directory_is_an_error_naming_the_path() {
        let root = tempfile::tempdir().unwrap();
        let err = write_atomic(root.path(), Path::new("/etc/nope/x.conf"), b"x").unwrap_err();
        assert!(err.to_string().contains("etc/nope"), "{err}");
        assert_eq!(
            read_under(root.path(), Path::new("/etc/nope/x.conf")).unwrap(),
            None
        );
    }

    #[test]
    fn stale_temporaries_of_dead_runs_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let dead = dir.path().join(".nfkit.conf.nfkit-999999999.tmp");
        let alive = dir
            .path()
            .join(format!(".nfkit.conf.nfkit-{}.tmp", nix::unistd::getpid()));
        let other = dir.path().join("x.tmp");
        for f in [&dead, &alive, &other] {
            fs::write(f, "").unwrap();
        }
        assert_eq!(remove_stale_temporaries(dir.path()), vec![dead.clone()]);
        assert!(alive.exists() && other.exists());
    }

    #[test]
    fn lock_can_be_taken_twice_in_sequence() {
        drop(lock_runs().unwrap());
        drop(lock_runs().unwrap());
    }
}
