//! Facts about the host: where its `/proc` and `/sys` are, the kernel
//! release, module support, network namespace, libkmod availability.
//!
//! Every reader goes through [`Host`], so tests and `--root DIR` point them at
//! another tree. A `Host` made with [`Host::offline`] never touches the
//! running kernel (no netlink, no sockets).

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::Serialize;

use crate::read::{Kind, ReadError};
use crate::sysctl::Sysctl;

/// Where the kernel's interfaces are and whether the kernel may be used.
#[derive(Debug, Clone)]
pub struct Host {
    /// Root of the file tree (`/`, or `--root DIR`).
    pub root: PathBuf,
    /// The procfs mount (`/proc`, or `DIR/proc`).
    pub proc_root: PathBuf,
    /// The sysfs mount (`/sys`, or `DIR/sys`).
    pub sys_root: PathBuf,
    /// `true` with `--root`: files only, no netlink, no writes to /proc.
    pub offline: bool,
    /// Facts that cannot change while nfkit runs, read once.
    once: Once,
}

/// Facts of a [`Host`] read on first use and kept: the kernel release and
/// whether it has module support do not change while a process runs, and
/// several readers of one command ask (`status` asked for `/proc/modules`
/// four times and read `osrelease` twice). The network namespace is not
/// here: a thread may `setns` (`metrics --all-netns`).
#[derive(Debug, Clone, Default)]
struct Once {
    release: OnceLock<Option<String>>,
    module_support: OnceLock<bool>,
}

impl Host {
    /// The running system.
    pub fn live() -> Self {
        Self {
            root: PathBuf::from("/"),
            proc_root: PathBuf::from("/proc"),
            sys_root: PathBuf::from("/sys"),
            offline: false,
            once: Once::default(),
        }
    }

    /// A tree under `root`, used offline.
    pub fn offline(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        Self {
            proc_root: root.join("proc"),
            sys_root: root.join("sys"),
            root,
            offline: true,
            once: Once::default(),
        }
    }

    /// A tree under `root`, used offline; the root must be a directory
    /// (a typo in `--root` must not read as an empty host).
    pub fn offline_checked(root: impl Into<PathBuf>) -> Result<Self, RootError> {
        let root = root.into();
        match fs::metadata(&root) {
            Ok(meta) if meta.is_dir() => Ok(Self::offline(root)),
            Ok(_) => Err(RootError::NotADirectory { root }),
            Err(cause) => Err(RootError::Unusable { root, cause }),
        }
    }

    /// A path below `/proc`.
    pub fn proc(&self, relative: impl AsRef<Path>) -> PathBuf {
        self.proc_root.join(relative)
    }

    /// A path below `/sys`.
    pub fn sys(&self, relative: impl AsRef<Path>) -> PathBuf {
        self.sys_root.join(relative)
    }

    /// The `/proc/sys` tree.
    pub fn sysctl(&self) -> Sysctl {
        if self.offline {
            Sysctl::within(&self.root, self.proc("sys"))
        } else {
            Sysctl::at(self.proc("sys"))
        }
    }

    /// Reads a file below this host's `/proc` or `/sys` (or any path under
    /// its root): regular files only, capped by `kind`, confined to the
    /// root when offline; `Ok(None)` when absent.
    pub fn read(&self, full: &Path, kind: Kind) -> Result<Option<String>, ReadError> {
        crate::read::read_confined(self.confining_root(), full, kind)
    }

    /// [`Host::read`] for a gzip-compressed text file (`/proc/config.gz`).
    pub fn read_gzip(&self, full: &Path, kind: Kind) -> Result<Option<String>, ReadError> {
        crate::read::read_gzip_confined(self.confining_root(), full, kind)
    }

    /// What reads are confined to: the offline root, or `/`.
    fn confining_root(&self) -> &Path {
        if self.offline {
            &self.root
        } else {
            Path::new("/")
        }
    }

    /// [`Host::read`] as an `io::Result` (a missing file is `NotFound`; a
    /// refused one `InvalidData` carrying the reader's message), for
    /// readers that report per field rather than fail.
    pub fn read_io(&self, full: &Path, kind: Kind) -> io::Result<String> {
        match self.read(full, kind) {
            Ok(Some(text)) => Ok(text),
            Ok(None) => Err(io::Error::from(io::ErrorKind::NotFound)),
            Err(ReadError::Io { source, .. }) => Err(source),
            Err(e) => Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
        }
    }

    /// `uname -r`, from `/proc/sys/kernel/osrelease`; `Ok(None)` when
    /// absent. Read once (a read error is not kept: it is returned again).
    pub fn kernel_release(&self) -> Result<Option<String>, ReadError> {
        if let Some(release) = self.once.release.get() {
            return Ok(release.clone());
        }
        let release = if self.running_kernel_proc() {
            // The running kernel's own answer: `uname(2)` gives the same
            // string as /proc/sys/kernel/osrelease (both the UTS
            // namespace's release), one system call instead of five.
            let uts = nix::sys::utsname::uname().map_err(|errno| ReadError::Io {
                op: "uname",
                path: self.proc("sys/kernel/osrelease"),
                source: io::Error::from(errno),
            })?;
            Some(uts.release().to_string_lossy().into_owned())
        } else {
            self.read(&self.proc("sys/kernel/osrelease"), Kind::KernelValue)?
                .map(|s| s.trim().to_string())
        };
        Ok(self.once.release.get_or_init(|| release).clone())
    }

    /// Whether `proc_root` is the running kernel's `/proc` seen by this
    /// process (a live host), so a system call may answer what its files
    /// say about this process and kernel.
    pub(crate) fn running_kernel_proc(&self) -> bool {
        !self.offline && is_running_proc(&self.proc_root)
    }

    /// Whether the kernel supports loadable modules (`/proc/modules` exists
    /// only with `CONFIG_MODULES`). Looked up once.
    pub fn has_module_support(&self) -> bool {
        *self
            .once
            .module_support
            .get_or_init(|| self.proc("modules").exists())
    }

    /// Whether a kernel component is present without needing to be loaded:
    /// always true on a kernel without module support (then it is either
    /// built in or absent, and asking is harmless); otherwise true when
    /// `/sys/module/NAME` exists or `modules.builtin` lists it.
    ///
    /// Used to avoid netlink requests that would make the kernel autoload a
    /// module (`request_module("nfnetlink-subsys-N")`) as a side effect of a
    /// read-only command.
    pub fn component_present(&self, module: &str) -> bool {
        if !self.has_module_support() {
            return true;
        }
        if self.sys("module").join(module).exists() {
            return true;
        }
        let Ok(Some(release)) = self.kernel_release() else {
            return false;
        };
        let builtin = self
            .root
            .join("lib/modules")
            .join(release)
            .join("modules.builtin");
        match self.read(&builtin, Kind::ModuleIndex) {
            Ok(Some(text)) => crate::modules::name::names_in_builtin(&text).any(|m| m.is(module)),
            _ => false,
        }
    }

    /// The network namespace this process is in.
    pub fn network_namespace(&self) -> NetnsInfo {
        let inode = |p: &Path| fs::metadata(p).ok().map(|m| m.ino());
        let own = inode(&self.proc("self/ns/net"));
        let init = inode(&self.proc("1/ns/net"));
        // Global netfilter limits are 0444 outside the initial namespace
        // (nf_conntrack_standalone_init_sysctl) and the legacy
        // net.nf_conntrack_max is registered for init_net only.
        let limits_read_only = self
            .sysctl()
            .is_read_only("net/netfilter/nf_conntrack_max")
            .ok()
            .flatten();
        let initial = match (limits_read_only, own, init) {
            (Some(read_only), _, _) => Some(!read_only),
            (None, Some(a), Some(b)) => Some(a == b),
            _ => None,
        };
        NetnsInfo {
            inode: own,
            initial,
        }
    }
}

/// Why `--root DIR` cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RootError {
    /// DIR does not exist or cannot be inspected.
    #[error("use --root {}: {cause}", root.display())]
    Unusable { root: PathBuf, cause: io::Error },
    /// DIR is not a directory.
    #[error("use --root {}: not a directory", root.display())]
    NotADirectory { root: PathBuf },
}

impl crate::error::Hint for RootError {
    /// A hint for the user.
    fn hint(&self) -> Option<std::borrow::Cow<'static, str>> {
        Some(std::borrow::Cow::Borrowed(
            "--root takes the directory an image or container is unpacked in \
             (holding its etc/, lib/modules/, and optionally proc/ and sys/)",
        ))
    }
}

/// The process's network namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct NetnsInfo {
    /// Inode of `/proc/self/ns/net`.
    pub inode: Option<u64>,
    /// Whether it is the initial namespace (`None`: cannot tell).
    pub initial: Option<bool>,
}

/// Whether `proc_root` is `/proc` itself: the procfs of the running kernel
/// as this process sees it (`/proc/self` is this process), where a system
/// call answers what those files say. A `--root` tree's `DIR/proc` is not.
pub(crate) fn is_running_proc(proc_root: &Path) -> bool {
    proc_root == Path::new("/proc")
}

/// `struct __user_cap_header_struct` of `capget(2)`/`capset(2)`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct`: one 32-bit half of each set.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit sets, two [`CapData`] records.
const CAP_VERSION_3: u32 = 0x2008_0522;

/// `capget(2)` or `capset(2)` (`call`) for the calling thread with the
/// version-3 layout: capget fills `data`, capset takes it.
fn capability_call(call: libc::c_long, data: &mut [CapData; 2]) -> io::Result<()> {
    let mut header = CapHeader {
        version: CAP_VERSION_3,
        pid: 0, // the calling thread
    };
    // SAFETY: with version 3 both calls read the header and read or write
    // exactly two `CapData` records (the `__user_cap_data_struct` layout)
    // through the second pointer; both point to live values borrowed for
    // the call. capset changes only the calling thread's capabilities.
    let rc = unsafe { libc::syscall(call, std::ptr::from_mut(&mut header), data.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The effective capability set of the calling thread (`capget(2)`): the
/// `CapEff:` line of `/proc/thread-self/status`, without generating and
/// parsing that file (~20 µs of procfs work against well under 1 µs).
pub(crate) fn effective_capabilities() -> io::Result<u64> {
    let mut data = [CapData::default(); 2];
    capability_call(libc::SYS_capget, &mut data)?;
    Ok((u64::from(data[1].effective) << 32) | u64::from(data[0].effective))
}

/// Removes `bits` from the calling thread's effective set (tests: a thread
/// without a capability, the rest of the process unchanged).
#[cfg(test)]
pub(crate) fn drop_effective_capabilities(bits: u64) -> io::Result<()> {
    let mut data = [CapData::default(); 2];
    capability_call(libc::SYS_capget, &mut data)?;
    data[0].effective &= !(bits as u32);
    data[1].effective &= !((bits >> 32) as u32);
    capability_call(libc::SYS_capset, &mut data)
}

/// Where `libkmod.so.2` is, found the way the dynamic loader would look
/// (`LD_LIBRARY_PATH`, the directories of `/etc/ld.so.conf.d`, the
/// multiarch and default library directories) without loading it: loading
/// libkmod pulls in libcrypto, libzstd and liblzma, which would double
/// the start-up time and memory of `nfkit status`. Module commands load it.
pub fn find_libkmod() -> Result<PathBuf, String> {
    let soname = crate::kmod::ffi::LIBKMOD_SONAME;
    let triplet = format!("{}-linux-gnu", std::env::consts::ARCH);
    let found =
        |dirs: &mut dyn Iterator<Item = PathBuf>| dirs.map(|d| d.join(soname)).find(|p| p.exists());
    let env_dirs: Vec<PathBuf> = std::env::var_os("LD_LIBRARY_PATH")
        .map(|v| std::env::split_paths(&v).collect())
        .unwrap_or_default();
    // The usual places first; the ld.so.conf.d directories only when it is
    // not there (reading them costs a few system calls on every start).
    let standard = [
        Path::new("/lib").join(&triplet),
        Path::new("/usr/lib").join(&triplet),
        PathBuf::from("/lib64"),
        PathBuf::from("/usr/lib64"),
        PathBuf::from("/lib"),
        PathBuf::from("/usr/lib"),
    ];
    if let Some(p) = found(&mut env_dirs.into_iter().chain(standard)) {
        return Ok(p);
    }
    let mut conf_dirs = Vec::new();
    if let Ok(entries) = fs::read_dir("/etc/ld.so.conf.d") {
        let mut confs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        confs.sort();
        for conf in confs {
            if let Ok(Some(text)) = crate::read::read_text(Path::new("/"), &conf, Kind::Config) {
                conf_dirs.extend(
                    text.lines()
                        .map(str::trim)
                        .filter(|l| l.starts_with('/'))
                        .map(PathBuf::from),
                );
            }
        }
    }
    found(&mut conf_dirs.into_iter())
        .ok_or_else(|| format!("{soname} not found in the library path"))
}

/// Reads a whole small file, mapping "not found" to `None`.
pub fn read_optional(path: &Path) -> io::Result<Option<String>> {
    match crate::read::read_text(Path::new("/"), path, Kind::Config) {
        Ok(text) => Ok(text),
        Err(ReadError::Io { source, .. }) => Err(source),
        Err(e) => Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The live release comes from `uname(2)`: the same string as the
    /// file that offline trees (and this kernel) have.
    #[test]
    fn live_release_is_the_osrelease_file() {
        let file = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        let host = Host::live();
        assert!(host.running_kernel_proc());
        assert_eq!(host.kernel_release().unwrap().as_deref(), Some(file.trim()));
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("proc/sys/kernel")).unwrap();
        fs::write(
            dir.path().join("proc/sys/kernel/osrelease"),
            "5.10.0-99-amd64\n",
        )
        .unwrap();
        let offline = Host::offline(dir.path());
        assert!(!offline.running_kernel_proc());
        assert_eq!(
            offline.kernel_release().unwrap().as_deref(),
            Some("5.10.0-99-amd64")
        );
    }
}
