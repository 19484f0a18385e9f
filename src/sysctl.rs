//! `/proc/sys` reads and writes, rooted at a directory so tests and
//! `--root` can point them at a fake tree.
//!
//! Key syntax follows systemd's `sysctl_normalize()`: when the first
//! separator is a dot, dots and slashes swap (so `net.ipv4.conf.eth0/100.x`
//! names the interface `eth0.100`); when it is a slash, the key is kept
//! verbatim. Keys that would leave the tree (`..`, empty components) are
//! refused.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Errors of sysctl access; each names the key, the path and the cause.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The key is not a valid sysctl name.
    #[error("invalid sysctl key {key:?}: {reason}")]
    InvalidKey { key: String, reason: &'static str },
    /// Reading failed.
    #[error("cannot read sysctl {key} ({})", path.display())]
    Read {
        key: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The key's file is not one nfkit reads (not a regular file, too
    /// large, or a symlink leaving an offline root).
    #[error("cannot read sysctl {key}")]
    File {
        key: String,
        #[source]
        source: crate::read::ReadError,
    },
    /// Writing failed.
    #[error("cannot write {value:?} to sysctl {key} ({})", path.display())]
    Write {
        key: String,
        value: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// The errno behind this error, when there is one.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Read { source, .. } | Error::Write { source, .. } => source.raw_os_error(),
            Error::InvalidKey { .. } | Error::File { .. } => None,
        }
    }
}
impl crate::error::Hint for Error {
    /// A hint for the user, when the cause suggests one.
    fn hint(&self) -> Option<std::borrow::Cow<'static, str>> {
        match (self, self.raw_os_error()) {
            (Error::Write { .. }, Some(libc::EACCES)) => Some(
                "the key is read-only here: not root, or a network namespace \
                 other than the initial one (global netfilter limits are set \
                 from the host)",
            ),
            (_, Some(libc::EPERM)) => Some("needs root (CAP_SYS_ADMIN / CAP_NET_ADMIN)"),
            (_, Some(libc::ENOENT)) => Some(
                "the key does not exist on this kernel: the subsystem may not \
                 be loaded (for nf_conntrack_*: `nfkit modules load nf_conntrack`)",
            ),
            (Error::Write { .. }, Some(libc::EINVAL)) => {
                Some("the kernel rejected the value as out of range")
            }
            (Error::Write { .. }, Some(libc::ENOMEM)) => {
                Some("the kernel could not allocate that much; use a smaller value")
            }
            _ => None,
        }
        .map(std::borrow::Cow::Borrowed)
    }
}

/// Normalises a sysctl key to its `/`-separated path below `/proc/sys`.
pub fn key_to_relative_path(key: &str) -> Result<String, Error> {
    let invalid = |reason| Error::InvalidKey {
        key: key.to_string(),
        reason,
    };
    let trimmed = key.trim_start_matches('/');
    if trimmed.is_empty() {
        return Err(invalid("empty key"));
    }
    let first_sep = trimmed.find(['.', '/']);
    let path: String = match first_sep.map(|i| trimmed.as_bytes()[i]) {
        Some(b'.') => trimmed
            .chars()
            .map(|c| match c {
                '.' => '/',
                '/' => '.',
                other => other,
            })
            .collect(),
        _ => trimmed.to_string(),
    };
    let mut components = Vec::new();
    for part in path.split('/') {
        match part {
            "" => {} // systemd's path_simplify folds repeated separators
            "." | ".." => return Err(invalid("the key must not contain `.` or `..` components")),
            p if p.contains('\0') => return Err(invalid("the key must not contain NUL")),
            p => components.push(p),
        }
    }
    if components.is_empty() {
        return Err(invalid("empty key"));
    }
    Ok(components.join("/"))
}

/// The dotted form of a key (for display): `net/netfilter/x` → `net.netfilter.x`.
pub fn relative_path_to_key(path: &str) -> String {
    path.chars()
        .map(|c| match c {
            '/' => '.',
            '.' => '/',
            other => other,
        })
        .collect()
}

/// Access to one `/proc/sys` tree.
#[derive(Debug, Clone)]
pub struct Sysctl {
    root: PathBuf,
    /// Reads are confined to this root (`/`: none; an offline `--root`).
    confine: PathBuf,
}

impl Default for Sysctl {
    fn default() -> Self {
        Self::at("/proc/sys")
    }
}

impl Sysctl {
    /// A tree rooted at `root` (normally `/proc/sys`).
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            confine: PathBuf::from("/"),
        }
    }

    /// A tree at `root` inside the offline tree `confine` (`--root DIR`):
    /// reads never follow a symlink out of `confine`.
    pub fn within(confine: impl Into<PathBuf>, root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            confine: confine.into(),
        }
    }

    /// The file behind a key.
    pub fn path_of(&self, key: &str) -> Result<PathBuf, Error> {
        Ok(self.root.join(key_to_relative_path(key)?))
    }

    /// Reads a key; `Ok(None)` when it does not exist.
    pub fn read(&self, key: &str) -> Result<Option<String>, Error> {
        let path = self.path_of(key)?;
        self.read_at(key, &path)
    }

    /// [`Sysctl::read`] of the key's file `path` (built once by the caller).
    fn read_at(&self, key: &str, path: &Path) -> Result<Option<String>, Error> {
        match crate::read::read_confined(&self.confine, path, crate::read::Kind::KernelValue) {
            Ok(mut text) => {
                if let Some(t) = text.as_mut() {
                    t.truncate(t.trim_end_matches('\n').len());
                }
                Ok(text)
            }
            Err(crate::read::ReadError::Io { source, path, .. }) => Err(Error::Read {
                key: key.to_string(),
                path,
                source,
            }),
            Err(source) => Err(Error::File {
                key: key.to_string(),
                source,
            }),
        }
    }

    /// Reads a key as an unsigned number; `Ok(None)` when absent.
    pub fn read_u64(&self, key: &str) -> Result<Option<u64>, Error> {
        let path = self.path_of(key)?;
        match self.read_at(key, &path)? {
            None => Ok(None),
            Some(text) => text.trim().parse().map(Some).map_err(|_| Error::Read {
                key: key.to_string(),
                path,
                source: io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("not a number: {text:?}"),
                ),
            }),
        }
    }

    /// Whether the key's file is read-only by mode (as in a non-initial
    /// network namespace, where global netfilter limits are 0444).
    pub fn is_read_only(&self, key: &str) -> Result<Option<bool>, Error> {
        let path = self.path_of(key)?;
        match fs::metadata(&path) {
            Ok(meta) => Ok(Some(meta.permissions().mode() & 0o222 == 0)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::Read {
                key: key.to_string(),
                path,
                source,
            }),
        }
    }

    /// Writes `value` in one `write(2)`, as sysctl(8) does. The file is
    /// never created: a missing key is an error.
    pub fn write(&self, key: &str, value: &str) -> Result<(), Error> {
        let path = self.path_of(key)?;
        let result = fs::OpenOptions::new()
            .write(true)
            .truncate(true) // no effect on /proc; keeps fake trees exact
            .open(&path)
            .and_then(|mut file| file.write_all(value.as_bytes()));
        result.map_err(|source| Error::Write {
            key: key.to_string(),
            value: value.to_string(),
            path,
            source,
        })
    }
}

/// Reads a kernel virtual file in one go (a second `read` of a proc file may
/// see a newer value, so the buffer is a page up front): open, `fstat`,
/// read, close. Regular files only, at most [`Kind::KernelValue`] bytes
/// (see [`crate::read`]); a missing file is `NotFound`.
///
/// [`Kind::KernelValue`]: crate::read::Kind::KernelValue
pub fn read_virtual_file(path: &Path) -> io::Result<String> {
    match crate::read::read_text(Path::new("/"), path, crate::read::Kind::KernelValue) {
        Ok(Some(text)) => Ok(text),
        Ok(None) => Err(io::Error::from(io::ErrorKind::NotFound)),
        Err(crate::read::ReadError::Io { source, .. }) => Err(source),
        Err(e) => Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_like_systemd() {
        // Vectors from systemd's test-sysctl-util.c.
        assert_eq!(
            key_to_relative_path("net.ipv4.conf.enp3s0/200.forwarding").unwrap(),
            "net/ipv4/conf/enp3s0.200/forwarding"
        );
        assert_eq!(
            key_to_relative_path("net/ipv4/conf/enp3s0.200/forwarding").unwrap(),
            "net/ipv4/conf/enp3s0.200/forwarding"
        );
        assert_eq!(key_to_relative_path("a...b...c").unwrap(), "a/b/c");
        assert_eq!(key_to_relative_path("/a///b///c").unwrap(), "a/b/c");
        assert_eq!(
            key_to_relative_path("net.nf_conntrack_max").unwrap(),
            "net/nf_conntrack_max"
        );
    }

    #[test]
    fn refuses_keys_leaving_the_tree() {
        assert!(key_to_relative_path("net/../../etc/passwd").is_err());
        assert!(key_to_relative_path("").is_err());
        assert!(key_to_relative_path("/").is_err());
        assert!(key_to_relative_path("net/./x").is_err());
    }

    #[test]
    fn reads_and_writes_a_fake_tree() {
        let dir = tempfile::tempdir().unwrap();
        let sysctl = Sysctl::at(dir.path());
        fs::create_dir_all(dir.path().join("net/netfilter")).unwrap();
        fs::write(
            dir.path().join("net/netfilter/nf_conntrack_max"),
            "262144\n",
        )
        .unwrap();
        assert_eq!(
            sysctl.read_u64("net.netfilter.nf_conntrack_max").unwrap(),
            Some(262_144)
        );
        assert_eq!(sysctl.read("net.netfilter.absent").unwrap(), None);
        sysctl
            .write("net.netfilter.nf_conntrack_max", "1000")
            .unwrap();
        assert_eq!(
            sysctl
                .read("net/netfilter/nf_conntrack_max")
                .unwrap()
                .as_deref(),
            Some("1000")
        );
        let err = sysctl.write("net.netfilter.absent", "1").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
        assert!(err.to_string().contains("net.netfilter.absent"));
        assert!(crate::error::hint(&err).unwrap().contains("nf_conntrack"));
    }

    #[test]
    fn garbage_is_a_read_error_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("net/netfilter")).unwrap();
        fs::write(
            dir.path().join("net/netfilter/nf_conntrack_count"),
            "lots\n",
        )
        .unwrap();
        let err = Sysctl::at(dir.path())
            .read_u64("net.netfilter.nf_conntrack_count")
            .unwrap_err();
        assert!(err.to_string().contains("nf_conntrack_count"), "{err}");
    }

    #[test]
    fn read_only_detection() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("k");
        fs::write(&file, "1").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o444)).unwrap();
        let sysctl = Sysctl::at(dir.path());
        assert_eq!(sysctl.is_read_only("k").unwrap(), Some(true));
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(sysctl.is_read_only("k").unwrap(), Some(false));
        assert_eq!(sysctl.is_read_only("missing").unwrap(), None);
    }
}
