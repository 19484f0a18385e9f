//! The one way nfkit reads a file it did not write (I/O).
//!
//! - Regular files only: the file is opened non-blocking (a FIFO cannot
//!   stall the open) and `fstat`ed; FIFOs, devices, sockets and directories
//!   are refused with an error naming the path.
//! - A size cap per [`Kind`]: at most cap + 1 bytes are read, so `/dev/zero`
//!   or a runaway file cannot exhaust memory.
//! - Under an offline root (`--root DIR`) the path is resolved component by
//!   component with [`resolve_under`](crate::persist::files::resolve_under):
//!   symlinks stay inside the root (an absolute target is taken relative to
//!   it), and the final open does not follow links. On the live root `/` the
//!   kernel resolves the path (one `open`, one `fstat`, the reads).

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::persist::files::{self, FileError};

/// What a file is, which sets how large it may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kind {
    /// Configuration: nfkit.toml, /etc files, imported files (4 MiB; a list
    /// of every module of a distribution kernel is about 100 KiB).
    Config,
    /// One kernel value: a `/proc/sys` key, a `/sys` attribute,
    /// `/proc/cmdline`, `/proc/self/status` (64 KiB; the kernel's own
    /// string sysctls are at most a page).
    KernelValue,
    /// A kernel table: `/proc/modules`, `/proc/slabinfo`,
    /// `/proc/net/stat/nf_conntrack` (16 MiB; these grow with modules, slab
    /// caches and CPUs and stay well below 1 MiB on large hosts).
    KernelTable,
    /// A module tree's index or list (`modules.builtin`, `modules.dep.bin`,
    /// …: 64 MiB; `modules.alias.bin` of a distribution kernel is ~1 MiB).
    ModuleIndex,
}

impl Kind {
    /// The most bytes a file of this kind may hold.
    pub const fn cap(self) -> usize {
        match self {
            Kind::Config => 4 << 20,
            Kind::KernelValue => 64 << 10,
            Kind::KernelTable => 16 << 20,
            Kind::ModuleIndex => 64 << 20,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Kind::Config => "a configuration file",
            Kind::KernelValue => "a kernel value",
            Kind::KernelTable => "a kernel table",
            Kind::ModuleIndex => "a module tree file",
        }
    }
}

/// Why a file could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The path names a FIFO, device, socket or directory.
    #[error("read {}: not a regular file but a {what}", path.display())]
    NotRegular { path: PathBuf, what: &'static str },
    /// The file is larger than its kind allows.
    #[error("read {}: larger than {} bytes, the limit for {}", path.display(), kind.cap(), kind.describe())]
    TooLarge { path: PathBuf, kind: Kind },
    /// A symlink in the path leads outside the root.
    #[error("read {}: a symlink in the path leads outside {} ({detail})", path.display(), root.display())]
    Escapes {
        path: PathBuf,
        root: PathBuf,
        detail: String,
    },
    /// The text is not UTF-8 (nfkit.toml, kernel files: the whole file must be).
    #[error("read {}:{line}: not valid UTF-8", path.display())]
    NotUtf8 { path: PathBuf, line: usize },
    /// A configuration line other than a comment holds bytes that are not
    /// UTF-8 (comments may: they are kept byte for byte).
    #[error("read {}:{line}: bytes that are not UTF-8 outside a comment", path.display())]
    NotUtf8Value { path: PathBuf, line: usize },
    /// A gzip-compressed file (`/proc/config.gz`) is not one valid gzip
    /// stream (bad header, corrupt data, CRC or length mismatch, cut short).
    #[error("read {}: not a valid gzip file", path.display())]
    Gzip {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// An I/O call failed.
    #[error("{op} {}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl ReadError {
    /// The path the error is about.
    pub fn path(&self) -> &Path {
        match self {
            ReadError::NotRegular { path, .. }
            | ReadError::TooLarge { path, .. }
            | ReadError::Escapes { path, .. }
            | ReadError::NotUtf8 { path, .. }
            | ReadError::NotUtf8Value { path, .. }
            | ReadError::Gzip { path, .. }
            | ReadError::Io { path, .. } => path,
        }
    }
}

impl crate::error::Hint for ReadError {
    /// A hint for the user.
    fn hint(&self) -> Option<std::borrow::Cow<'static, str>> {
        self.hint_text().map(Into::into)
    }
}

impl ReadError {
    fn hint_text(&self) -> Option<&'static str> {
        match self {
            ReadError::NotRegular { .. } => {
                Some("nfkit reads only regular files; replace it with a file (or remove it)")
            }
            ReadError::TooLarge { .. } => {
                Some("no real file of this kind is this large; check what the path holds")
            }
            ReadError::Escapes { .. } => {
                Some("fix or remove the symlink; under --root nfkit reads only inside DIR")
            }
            ReadError::NotUtf8 { .. } => {
                Some("convert the file to UTF-8 (for example with iconv -t UTF-8)")
            }
            ReadError::NotUtf8Value { .. } => Some(
                "only comment lines may hold other encodings; convert the file to UTF-8 \
                 (for example with iconv -t UTF-8)",
            ),
            ReadError::Gzip { .. } => {
                Some("check the file with `gzip -t`; a kernel writes /proc/config.gz whole")
            }
            ReadError::Io { source, .. } => match source.raw_os_error() {
                Some(libc::EACCES) | Some(libc::EPERM) => {
                    Some("reading it needs permission: run as root or fix the file's mode")
                }
                _ => None,
            },
        }
    }
}

/// What a file that is not a regular file is, for messages.
pub(crate) fn kind_of_file(ty: std::fs::FileType) -> &'static str {
    if ty.is_dir() {
        "directory"
    } else if ty.is_fifo() {
        "FIFO"
    } else if ty.is_char_device() {
        "character device"
    } else if ty.is_block_device() {
        "block device"
    } else if ty.is_socket() {
        "socket"
    } else if ty.is_file() {
        "regular file"
    } else {
        "special file"
    }
}

/// Reads `path` as seen from inside `root` (`/` or `--root DIR`);
/// `Ok(None)` when it does not exist. The whole file must be UTF-8.
pub fn read_text(root: &Path, path: &Path, kind: Kind) -> Result<Option<String>, ReadError> {
    let bytes = read_bytes(root, path, kind)?;
    bytes.map(|(real, b)| strict_utf8(&real, b)).transpose()
}

/// Reads a configuration file in one of the line formats nfkit edits
/// (sysctl.conf, sysctl.d, modprobe.d, modules-load.d, /etc/modules,
/// iptables-config): bytes that are not UTF-8 may stand on comment lines
/// (first non-blank character `#` or `;`) and come back as
/// [`lossless::decode`](crate::lossless::decode) escapes, which [`lossless::encode`](crate::lossless::encode) turns back into
/// the same bytes when nfkit rewrites the file; on any other line they are
/// an error naming the file and line.
pub fn read_config(root: &Path, path: &Path) -> Result<Option<String>, ReadError> {
    let Some((real, bytes)) = read_bytes(root, path, Kind::Config)? else {
        return Ok(None);
    };
    let text = crate::lossless::decode(&bytes);
    if let Some(line) = crate::lossless::first_escape_outside_comment(&text) {
        return Err(ReadError::NotUtf8Value { path: real, line });
    }
    Ok(Some(text))
}

/// Reads a file nfkit only searches (a boot script such as rc.local): any
/// bytes, the ones that are not UTF-8 as
/// [`lossless::decode`](crate::lossless::decode) escapes. Kinds, caps and
/// confinement as for every read.
pub fn read_any_text(root: &Path, path: &Path, kind: Kind) -> Result<Option<String>, ReadError> {
    Ok(read_bytes(root, path, kind)?.map(|(_, bytes)| crate::lossless::decode(&bytes)))
}

fn strict_utf8(real: &Path, bytes: Vec<u8>) -> Result<String, ReadError> {
    String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        ReadError::NotUtf8 {
            path: real.to_path_buf(),
            line: 1 + valid.iter().filter(|&&b| b == b'\n').count(),
        }
    })
}

fn read_bytes(
    root: &Path,
    path: &Path,
    kind: Kind,
) -> Result<Option<(PathBuf, Vec<u8>)>, ReadError> {
    let live = root == Path::new("/");
    let real = resolve_inside(root, path)?;
    Ok(read_real(&real, kind, !live)?.map(|b| (real, b)))
}

/// The real path of `path` as seen from inside `root`: symlinks resolved
/// with `root` as `/` (an absolute link stays inside an offline root).
pub(crate) fn resolve_inside(root: &Path, path: &Path) -> Result<PathBuf, ReadError> {
    files::resolve_under(root, path).map_err(|e| match e {
        FileError::Escapes { path, root, detail } => ReadError::Escapes { path, root, detail },
        FileError::Io { op, path, source } => ReadError::Io { op, path, source },
        FileError::Read(e) => e,
    })
}

/// Reads the real path `full` (as `Host` builds them: `DIR/proc/...`),
/// confined to `root` when it lies below an offline root.
pub fn read_confined(root: &Path, full: &Path, kind: Kind) -> Result<Option<String>, ReadError> {
    read_confined_bytes(root, full, kind)?
        .map(|(real, b)| strict_utf8(&real, b))
        .transpose()
}

/// [`read_confined`] for a gzip-compressed text file (`/proc/config.gz`):
/// the compressed file and the text it expands to are each capped by
/// `kind`, the gzip trailer's CRC and length are checked, and the text
/// must be UTF-8.
pub fn read_gzip_confined(
    root: &Path,
    full: &Path,
    kind: Kind,
) -> Result<Option<String>, ReadError> {
    let Some((real, compressed)) = read_confined_bytes(root, full, kind)? else {
        return Ok(None);
    };
    let text = gunzip_capped(&compressed, kind).map_err(|e| match e {
        Gunzip::TooLarge => ReadError::TooLarge {
            path: real.clone(),
            kind,
        },
        Gunzip::Invalid(source) => ReadError::Gzip {
            path: real.clone(),
            source,
        },
    })?;
    strict_utf8(&real, text).map(Some)
}

/// Why a gzip stream could not be expanded.
pub(crate) enum Gunzip {
    TooLarge,
    Invalid(io::Error),
}

/// Expands one gzip member (RFC 1952) to at most `kind.cap()` bytes.
pub(crate) fn gunzip_capped(compressed: &[u8], kind: Kind) -> Result<Vec<u8>, Gunzip> {
    let mut out = Vec::new();
    let cap = kind.cap() as u64;
    flate2::read::GzDecoder::new(compressed)
        .take(cap + 1)
        .read_to_end(&mut out)
        .map_err(Gunzip::Invalid)?;
    if out.len() as u64 > cap {
        return Err(Gunzip::TooLarge);
    }
    Ok(out)
}

/// The bytes of `full` and its real path; see [`read_confined`].
fn read_confined_bytes(
    root: &Path,
    full: &Path,
    kind: Kind,
) -> Result<Option<(PathBuf, Vec<u8>)>, ReadError> {
    match full.strip_prefix(root) {
        Ok(inner) if root != Path::new("/") => read_bytes(root, &Path::new("/").join(inner), kind),
        _ => Ok(read_real(full, kind, false)?.map(|b| (full.to_path_buf(), b))),
    }
}

fn read_real(real: &Path, kind: Kind, no_follow: bool) -> Result<Option<Vec<u8>>, ReadError> {
    let io = |op: &'static str| {
        move |source: io::Error| ReadError::Io {
            op,
            path: real.to_path_buf(),
            source,
        }
    };
    let mut flags = libc::O_NONBLOCK | libc::O_NOCTTY;
    if no_follow {
        flags |= libc::O_NOFOLLOW;
    }
    let mut file = match OpenOptions::new().read(true).custom_flags(flags).open(real) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("open")(e)),
    };
    let meta = file.metadata().map_err(io("inspect"))?;
    let ty = meta.file_type();
    if !ty.is_file() {
        let what = kind_of_file(ty);
        return Err(ReadError::NotRegular {
            path: real.to_path_buf(),
            what,
        });
    }
    let cap = kind.cap();
    if meta.len() > cap as u64 {
        return Err(ReadError::TooLarge {
            path: real.to_path_buf(),
            kind,
        });
    }
    let bytes = read_capped(&mut file, meta.len() as usize, cap).map_err(io("read"))?;
    if bytes.len() > cap {
        return Err(ReadError::TooLarge {
            path: real.to_path_buf(),
            kind,
        });
    }
    Ok(Some(bytes))
}

/// Reads at most `cap + 1` bytes. The buffer is sized from the file's size
/// (0 for `/proc` and `/sys` files: then a page) so a regular file takes
/// one read plus the one that sees the end; it is not zeroed first (the
/// standard library reads into its spare capacity), and grows only for a
/// file longer than its size said.
fn read_capped(file: &mut File, size_hint: usize, cap: usize) -> io::Result<Vec<u8>> {
    let limit = cap.saturating_add(1);
    let mut buf = Vec::with_capacity(size_hint.saturating_add(1).max(4096).min(limit));
    file.take(u64::try_from(limit).unwrap_or(u64::MAX))
        .read_to_end(&mut buf)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn fifo(path: &Path) {
        nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    }

    #[test]
    fn reads_regular_files_and_missing_is_none() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("etc")).unwrap();
        fs::write(root.path().join("etc/a"), "x\n").unwrap();
        let read = |p: &str| read_text(root.path(), Path::new(p), Kind::Config);
        assert_eq!(read("/etc/a").unwrap().as_deref(), Some("x\n"));
        assert_eq!(read("/etc/missing").unwrap(), None);
        // The live fast path reads the same file.
        let full = root.path().join("etc/a");
        assert_eq!(
            read_text(Path::new("/"), &full, Kind::Config)
                .unwrap()
                .as_deref(),
            Some("x\n")
        );
    }

    #[test]
    fn fifos_directories_and_devices_are_refused_naming_the_path() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("etc/dir")).unwrap();
        fifo(&root.path().join("etc/fifo"));
        for (inner, what) in [("/etc/fifo", "FIFO"), ("/etc/dir", "directory")] {
            for r in [root.path(), Path::new("/")] {
                let p = if r == Path::new("/") {
                    root.path().join(&inner[1..])
                } else {
                    PathBuf::from(inner)
                };
                let err = read_text(r, &p, Kind::Config).unwrap_err();
                assert!(matches!(err, ReadError::NotRegular { .. }), "{err}");
                assert!(err.to_string().contains(what), "{err}");
                assert!(err.to_string().contains(&inner[1..]), "{err}");
            }
        }
        let err = read_text(Path::new("/"), Path::new("/dev/zero"), Kind::KernelValue).unwrap_err();
        assert!(err.to_string().contains("character device"), "{err}");
    }

    #[test]
    fn offline_links_stay_inside_the_root() {
        let root = tempfile::tempdir().unwrap();
        let kernel = root.path().join("proc/sys/kernel");
        fs::create_dir_all(&kernel).unwrap();
        // Absolute target: taken inside the root (DIR/dev/zero, absent).
        symlink("/dev/zero", kernel.join("osrelease")).unwrap();
        let full = kernel.join("osrelease");
        assert_eq!(
            read_confined(root.path(), &full, Kind::KernelValue).unwrap(),
            None
        );
        fs::create_dir_all(root.path().join("dev")).unwrap();
        fs::write(root.path().join("dev/zero"), "6.1.0-inside\n").unwrap();
        assert_eq!(
            read_confined(root.path(), &full, Kind::KernelValue)
                .unwrap()
                .as_deref(),
            Some("6.1.0-inside\n")
        );
        // Relative target climbing out: refused.
        fs::remove_file(&full).unwrap();
        symlink("../../../../../../../../../../dev/zero", &full).unwrap();
        let err = read_confined(root.path(), &full, Kind::KernelValue).unwrap_err();
        assert!(matches!(err, ReadError::Escapes { .. }), "{err}");
        assert!(err.to_string().contains("osrelease"), "{err}");
    }

    #[test]
    fn size_caps_hold_for_files_and_endless_devices() {
        let root = tempfile::tempdir().unwrap();
        let big = root.path().join("big");
        let f = File::create(&big).unwrap();
        f.set_len(Kind::KernelValue.cap() as u64 + 1).unwrap();
        let err = read_confined(root.path(), &big, Kind::KernelValue).unwrap_err();
        assert!(matches!(err, ReadError::TooLarge { .. }), "{err}");
        assert!(err.to_string().contains("big"), "{err}");
        // Exactly at the cap is fine.
        f.set_len(Kind::KernelValue.cap() as u64).unwrap();
        let text = read_confined(root.path(), &big, Kind::KernelValue)
            .unwrap()
            .unwrap();
        assert_eq!(text.len(), Kind::KernelValue.cap());
        // A file whose size says 0 but that never ends (as /proc files say
        // 0): read_capped stops at cap + 1.
        let mut zero = File::open("/dev/zero").unwrap();
        assert_eq!(read_capped(&mut zero, 0, 10_000).unwrap().len(), 10_001);
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gzip_text_is_expanded_checked_and_capped() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("config.gz");
        let read = || read_gzip_confined(root.path(), &path, Kind::KernelValue);
        assert_eq!(read().unwrap(), None);
        let text = "CONFIG_NF_CONNTRACK=y\n# CONFIG_NF_CONNTRACK_FTP is not set\n";
        fs::write(&path, gzip(text.as_bytes())).unwrap();
        assert_eq!(read().unwrap().as_deref(), Some(text));
        // Every damage is an error naming the file, never a partial text.
        let good = gzip(text.as_bytes());
        let n = good.len();
        let mut crc = good.clone();
        crc[n - 8] ^= 1;
        let mut len = good.clone();
        len[n - 4] ^= 1;
        let cases = [
            ("crc", crc),
            ("length", len),
            ("cut", good[..n - 3].to_vec()),
            ("plain text", text.as_bytes().to_vec()),
            ("empty", Vec::new()),
        ];
        for (what, bytes) in cases {
            fs::write(&path, bytes).unwrap();
            let e = read().unwrap_err();
            assert!(matches!(e, ReadError::Gzip { .. }), "{what}: {e:?}");
            assert_eq!(e.path(), path.as_path(), "{what}");
        }
        // The expanded text is capped by its kind (64 KiB here), the
        // compressed file too.
        fs::write(&path, gzip(&vec![b'#'; (64 << 10) + 1])).unwrap();
        assert!(matches!(read().unwrap_err(), ReadError::TooLarge { .. }));
        fs::write(&path, gzip(&vec![b'#'; 64 << 10])).unwrap();
        assert_eq!(read().unwrap().map(|t| t.len()), Some(64 << 10));
        fs::write(&path, gzip(&[0xff, b'\n'])).unwrap();
        assert!(matches!(read().unwrap_err(), ReadError::NotUtf8 { .. }));
    }
}
