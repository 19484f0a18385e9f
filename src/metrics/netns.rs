//! Conntrack entry counts of every network namespace (`--all-netns`).
//!
//! Namespaces are found through `/run/netns/*` (named by `ip netns`) and
//! `/proc/PID/ns/net` of every process; two paths to one namespace (same
//! nsfs device and inode) count once. Each namespace is entered by a new
//! thread with `setns(fd, CLONE_NEWNET)` (a thread may change its own
//! network namespace; the rest of the process stays where it is), which
//! then asks ctnetlink for the count (`IPCTNL_MSG_CT_GET_STATS`: a netlink
//! socket works in the namespace of the thread that opened it), or reads
//! `nf_conntrack_count` (`/proc/sys/net` follows the reading thread's
//! namespace) when ctnetlink is not there.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::conntrack::{self, KEY_COUNT};
use crate::netlink::NfnlSocket;
use crate::system::Host;

/// One namespace's count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetnsCount {
    /// Inode of the namespace (as `ls -iL /proc/PID/ns/net` shows it).
    pub inode: u64,
    /// Its names under `/run/netns` (empty: unnamed).
    pub names: Vec<String>,
    /// Conntrack entries in it (`None`: could not be read, see `error`).
    pub entries: Option<u64>,
    /// Why the count is missing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A namespace found, with one path that opens it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// nsfs device and inode.
    pub key: (u64, u64),
    /// A path to open it.
    pub path: PathBuf,
    /// Names from `/run/netns`.
    pub names: Vec<String>,
}

/// Merges candidate paths into distinct namespaces (pure): `named` are
/// `(name, key, path)` from `/run/netns`, `processes` `(key, path)` from
/// `/proc`. Sorted by inode; names sorted.
pub fn distinct(
    named: impl IntoIterator<Item = (String, (u64, u64), PathBuf)>,
    processes: impl IntoIterator<Item = ((u64, u64), PathBuf)>,
) -> Vec<Found> {
    let mut by_key: BTreeMap<(u64, u64), Found> = BTreeMap::new();
    for (name, key, path) in named {
        let found = by_key.entry(key).or_insert_with(|| Found {
            key,
            path,
            names: Vec::new(),
        });
        found.names.push(name);
    }
    for (key, path) in processes {
        by_key.entry(key).or_insert_with(|| Found {
            key,
            path,
            names: Vec::new(),
        });
    }
    let mut out: Vec<Found> = by_key.into_values().collect();
    for f in &mut out {
        f.names.sort();
    }
    out.sort_by_key(|f| (f.key.1, f.key.0));
    out
}

fn key_of(path: &Path) -> Option<(u64, u64)> {
    fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Every distinct namespace reachable from `run_netns` and `proc`.
pub fn find(run_netns: &Path, proc: &Path) -> Vec<Found> {
    let mut named = Vec::new();
    if let Ok(dir) = fs::read_dir(run_netns) {
        for entry in dir.flatten() {
            let path = entry.path();
            // A name whose bind mount is gone is a plain empty file: its
            // inode is not an nsfs one, and opening it for setns fails;
            // such files are left out by the device check below.
            if let Some(key) = key_of(&path) {
                named.push((entry.file_name().to_string_lossy().into_owned(), key, path));
            }
        }
    }
    let mut processes = Vec::new();
    if let Ok(dir) = fs::read_dir(proc) {
        for entry in dir.flatten() {
            let name = entry.file_name();
            if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let path = entry.path().join("ns/net");
            if let Some(key) = key_of(&path) {
                processes.push((key, path));
            }
        }
    }
    // The nsfs device: the one of our own namespace.
    let nsfs = key_of(&proc.join("self/ns/net")).map(|k| k.0);
    let named = named.into_iter().filter(|(_, k, _)| Some(k.0) == nsfs);
    distinct(named, processes)
}

/// The count in the namespace `path` opens, read by a thread that enters it.
pub fn count_in(path: &Path) -> Result<u64, String> {
    let file = fs::File::open(path).map_err(|e| format!("open {}: {e}", path.display()))?;
    let shown = path.display().to_string();
    let worker = std::thread::spawn(move || -> Result<u64, String> {
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("enter the namespace of {shown} (setns): {e}"))?;
        drop(file);
        count_here()
    });
    worker
        .join()
        .unwrap_or_else(|_| Err("the namespace reader panicked".into()))
}

/// The count in the calling thread's namespace: ctnetlink, else the
/// sysctl.
fn count_here() -> Result<u64, String> {
    let host = Host::live();
    let netlink_error = if host.component_present("nf_conntrack_netlink") {
        match NfnlSocket::open("read conntrack statistics")
            .and_then(|mut s| conntrack::netlink_global_stats(&mut s))
        {
            Ok(stats) => return Ok(stats.entries.into()),
            Err(e) => Some(crate::error::message(&e)),
        }
    } else {
        None
    };
    match host.sysctl().read_u64(KEY_COUNT) {
        Ok(Some(count)) => Ok(count),
        Ok(None) => Err(netlink_error.unwrap_or_else(|| {
            "no nf_conntrack_count in this namespace (connection tracking absent)".into()
        })),
        Err(e) => Err(crate::error::message(&e)),
    }
}

/// Counts in every namespace found.
pub fn count_all(host: &Host) -> Vec<NetnsCount> {
    find(Path::new("/run/netns"), &host.proc_root)
        .into_iter()
        .map(|found| {
            let result = count_in(&found.path);
            NetnsCount {
                inode: found.key.1,
                names: found.names,
                entries: result.as_ref().ok().copied(),
                error: result.err(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_join_and_duplicates_merge() {
        let found = distinct(
            vec![
                ("b".to_string(), (4, 20), PathBuf::from("/run/netns/b")),
                ("a".to_string(), (4, 20), PathBuf::from("/run/netns/a")),
                ("c".to_string(), (4, 30), PathBuf::from("/run/netns/c")),
            ],
            vec![
                ((4, 10), PathBuf::from("/proc/1/ns/net")),
                ((4, 20), PathBuf::from("/proc/7/ns/net")),
                ((4, 10), PathBuf::from("/proc/9/ns/net")),
            ],
        );
        assert_eq!(
            found,
            vec![
                Found {
                    key: (4, 10),
                    path: "/proc/1/ns/net".into(),
                    names: vec![]
                },
                Found {
                    key: (4, 20),
                    path: "/run/netns/b".into(),
                    names: vec!["a".into(), "b".into()]
                },
                Found {
                    key: (4, 30),
                    path: "/run/netns/c".into(),
                    names: vec!["c".into()]
                },
            ]
        );
    }

    proptest! {
        /// Each key appears once; every name is kept with its key.
        #[test]
        fn distinct_is_one_per_namespace(
            named in proptest::collection::vec(("[a-z]{1,3}", 0u64..5), 0..8),
            procs in proptest::collection::vec(0u64..8, 0..12),
        ) {
            let found = distinct(
                named.iter().map(|(n, i)| (n.clone(), (1, *i), PathBuf::from(n))),
                procs.iter().map(|i| ((1, *i), PathBuf::from(format!("/proc/{i}")))),
            );
            let keys: std::collections::BTreeSet<_> = found.iter().map(|f| f.key).collect();
            prop_assert_eq!(keys.len(), found.len());
            let expected: std::collections::BTreeSet<_> = named.iter().map(|(_, i)| (1, *i))
                .chain(procs.iter().map(|i| (1, *i))).collect();
            prop_assert_eq!(keys, expected);
            for (n, i) in &named {
                let f = found.iter().find(|f| f.key == (1, *i)).unwrap();
                prop_assert!(f.names.contains(n));
            }
        }
    }
}
