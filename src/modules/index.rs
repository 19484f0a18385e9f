//! Sanity check of a module tree's binary indexes (`modules.dep.bin`, …)
//! before the tree is handed to libkmod, which maps them and follows their
//! offsets unchecked: a truncated or garbage index crashes it (and
//! modprobe). The format (libkmod-index.c): big-endian u32 magic
//! `0xB007F457`, u32 version (major 2 in the high half), u32 offset of the
//! root node (flags in the top 4 bits).
//!
//! Then every node is walked ([`check_nodes`]): a node is an optional
//! NUL-terminated prefix, optional children (`first`, `last` bytes, then
//! `last - first + 1` u32 offsets), optional values (u32 count, then per
//! value a u32 priority and a NUL-terminated string). Each must lie inside
//! the file, and no node may be reached twice (the index is a tree), which
//! rules out cycles. Linear in the file's size.
//!
//! The node order is depmod's choice and has changed: kmod ≤ 33 writes
//! children before their parent and the root last (Debian 11/12), kmod 34
//! writes the root first, at offset 12, and its children after it (Debian
//! 13). Both are accepted; a truncated file of either kind is caught by the
//! walk (some offset then points past the end).

use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The index files libkmod opens in a module directory.
pub(crate) const INDEX_FILES: [&str; 5] = [
    "modules.dep.bin",
    "modules.alias.bin",
    "modules.symbols.bin",
    "modules.builtin.alias.bin",
    "modules.builtin.bin",
];

const MAGIC: u32 = 0xB007_F457;
const VERSION_MAJOR: u32 = 0x0002;
const HEADER_LEN: u64 = 12;
const OFFSET_MASK: u32 = 0x0FFF_FFFF;
const HAS_PREFIX: u32 = 0x8000_0000;
const HAS_VALUES: u32 = 0x4000_0000;
const HAS_CHILDREN: u32 = 0x2000_0000;
/// libkmod keeps at most this many children per node (7-bit characters).
const CHILD_MAX: u8 = 128;

/// What is wrong with an index, judged from its first 12 bytes and size.
pub(crate) fn check_header(header: &[u8], size: u64) -> Result<(), String> {
    if (header.len() as u64) < HEADER_LEN || size < HEADER_LEN {
        return Err(format!(
            "{size} bytes, shorter than the {HEADER_LEN}-byte header"
        ));
    }
    let word =
        |i: usize| u32::from_be_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    let (magic, version, root) = (word(0), word(4), word(8));
    if magic != MAGIC {
        return Err(format!("bad magic {magic:#010x} (expected {MAGIC:#010x})"));
    }
    if version >> 16 != VERSION_MAJOR {
        return Err(format!(
            "unsupported version {version:#010x} (expected major {VERSION_MAJOR})"
        ));
    }
    let offset = u64::from(root & OFFSET_MASK);
    if offset < HEADER_LEN || offset >= size {
        return Err(format!(
            "root node at offset {offset} outside the file's {size} bytes (truncated?)"
        ));
    }
    Ok(())
}

/// Walks every node of a whole index whose header [`check_header`]
/// accepted; the first fault found.
pub(crate) fn check_nodes(bytes: &[u8]) -> Result<(), String> {
    let end = bytes.len();
    let u32_at = |at: usize| -> Result<u32, String> {
        bytes
            .get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| format!("a number at offset {at} runs past the end ({end} bytes)"))
    };
    let string_end = |at: usize| -> Result<usize, String> {
        bytes
            .get(at..)
            .and_then(|rest| rest.iter().position(|&b| b == 0))
            .map(|n| at + n + 1)
            .ok_or_else(|| format!("a string at offset {at} runs past the end ({end} bytes)"))
    };
    // Offsets already walked, one bit each: a node reached twice means a
    // cycle or shared subtrees, which depmod never writes.
    let mut seen = vec![0u64; end / 64 + 1];
    // (node word, offset of its parent; 0 for the root).
    let mut pending = vec![(u32_at(8)?, 0)];
    while let Some((word, parent)) = pending.pop() {
        let offset = (word & OFFSET_MASK) as usize;
        if offset == 0 {
            continue;
        }
        if offset < HEADER_LEN as usize || offset >= end {
            return Err(format!(
                "node at offset {offset} (child of {parent}) outside the file's {end} bytes"
            ));
        }
        let (slot, bit) = (offset / 64, 1u64 << (offset % 64));
        if seen[slot] & bit != 0 {
            return Err(format!(
                "node at offset {offset} reached twice (again from {parent}): a cycle"
            ));
        }
        seen[slot] |= bit;
        let mut at = offset;
        if word & HAS_PREFIX != 0 {
            at = string_end(at)?;
        }
        if word & HAS_CHILDREN != 0 {
            let (first, last) = match bytes.get(at..at + 2) {
                Some(&[f, l]) => (f, l),
                _ => return Err(format!("node at offset {offset} is cut off")),
            };
            if first > last || last >= CHILD_MAX {
                return Err(format!(
                    "node at offset {offset} has a bad child range {first}..={last}"
                ));
            }
            at += 2;
            for _ in first..=last {
                pending.push((u32_at(at)?, offset));
                at += 4;
            }
        }
        if word & HAS_VALUES != 0 {
            let count = u32_at(at)? as usize;
            at += 4;
            // Each value takes at least 5 bytes: a count past that is garbage.
            if count > (end - at.min(end)) / 5 {
                return Err(format!(
                    "node at offset {offset} claims {count} values, more than the file holds"
                ));
            }
            for _ in 0..count {
                u32_at(at)?;
                at = string_end(at + 4)?;
            }
        }
    }
    Ok(())
}

/// Checks every index present in `module_dir`; a missing or empty one is
/// fine (libkmod then finds nothing in it). Returns the damaged file and why.
///
/// A file found sound is not read again in the same process while it is
/// the same file (device, inode, size, modification time): `nfkit boot`
/// and `apply` open up to three libkmod contexts on one tree (the running
/// state before, the load, what remains after), and each check reads and
/// walks every index (~3 MB on a distribution kernel).
pub(crate) fn check_tree(module_dir: &Path) -> Result<(), (PathBuf, String)> {
    for name in INDEX_FILES {
        let path = module_dir.join(name);
        check_file(&path).map_err(|why| (path, why))?;
    }
    Ok(())
}

/// What identifies one version of an index file: its path, device, inode,
/// size and modification time (s, ns), from the descriptor it was read by.
type Identity = (PathBuf, u64, u64, u64, i64, i64);

fn identity(path: &Path, meta: &std::fs::Metadata) -> Identity {
    use std::os::unix::fs::MetadataExt;
    (
        path.to_path_buf(),
        meta.dev(),
        meta.ino(),
        meta.size(),
        meta.mtime(),
        meta.mtime_nsec(),
    )
}

/// Index files this process found sound.
fn sound() -> &'static std::sync::Mutex<Vec<Identity>> {
    static SOUND: std::sync::OnceLock<std::sync::Mutex<Vec<Identity>>> = std::sync::OnceLock::new();
    SOUND.get_or_init(Default::default)
}

fn check_file(path: &Path) -> Result<(), String> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path);
    let mut file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("cannot open: {e}")),
    };
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot inspect: {e}"))?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    // An empty index holds no entries: libkmod refuses to map a file shorter
    // than the header and its lookups in it find nothing (as modprobe
    // does). kmod 28's depmod (Debian 11) writes an empty
    // modules.builtin.alias.bin. A file of 1..12 bytes is still damaged.
    if meta.len() == 0 {
        return Ok(());
    }
    let cap = crate::read::Kind::ModuleIndex.cap() as u64;
    if meta.len() > cap {
        return Err(format!("larger than {cap} bytes"));
    }
    let id = identity(path, &meta);
    if sound().lock().is_ok_and(|s| s.contains(&id)) {
        return Ok(());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    (&mut file)
        .take(cap)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    check_header(&bytes, bytes.len() as u64)?;
    check_nodes(&bytes)?;
    if let Ok(mut s) = sound().lock() {
        s.push(id);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(magic: u32, version: u32, root: u32) -> Vec<u8> {
        [magic, version, root]
            .iter()
            .flat_map(|w| w.to_be_bytes())
            .collect()
    }

    #[test]
    fn accepts_a_sound_header_and_names_each_fault() {
        let good = header(MAGIC, 0x0002_0001, 0x8000_0000 | 500);
        assert_eq!(check_header(&good, 1000), Ok(()));
        let cases = [
            (
                header(MAGIC, 0x0002_0001, 0x8000_0000 | 500),
                400,
                "truncated",
            ),
            (header(MAGIC, 0x0002_0001, 4), 1000, "outside"),
            (header(0x1234_5678, 0x0002_0001, 500), 1000, "magic"),
            (header(MAGIC, 0x0001_0000, 500), 1000, "version"),
            (good[..7].to_vec(), 7, "header"),
        ];
        for (bytes, size, needle) in cases {
            let err = check_header(&bytes, size).unwrap_err();
            assert!(err.contains(needle), "{err}");
        }
    }

    /// A two-key index as depmod ≤ 33 lays it out: children before parents.
    fn small_index() -> Vec<u8> {
        let mut b = header(MAGIC, 0x0002_0001, 0);
        // Leaf "a": prefix "bc", one value (priority 0, "v1").
        let leaf = b.len() as u32;
        b.extend(b"bc\0");
        b.extend(1u32.to_be_bytes());
        b.extend(0u32.to_be_bytes());
        b.extend(b"v1\0");
        // Root: children 'a'..='a' → leaf.
        let root = b.len() as u32;
        b.extend([b'a', b'a']);
        b.extend((leaf | HAS_PREFIX | HAS_VALUES).to_be_bytes());
        b[8..12].copy_from_slice(&(root | HAS_CHILDREN).to_be_bytes());
        b
    }

    /// The same index as kmod 34's depmod lays it out: the root first, at
    /// offset 12, its child after it.
    fn small_index_root_first() -> Vec<u8> {
        let mut b = header(MAGIC, 0x0002_0001, 12 | HAS_CHILDREN);
        let leaf = 12 + 2 + 4;
        b.extend([b'a', b'a']);
        b.extend((leaf | HAS_PREFIX | HAS_VALUES).to_be_bytes());
        assert_eq!(b.len() as u32, leaf);
        b.extend(b"bc\0");
        b.extend(1u32.to_be_bytes());
        b.extend(0u32.to_be_bytes());
        b.extend(b"v1\0");
        b
    }

    #[test]
    fn walks_a_sound_index_and_catches_every_truncation() {
        for b in [small_index(), small_index_root_first()] {
            walks_and_catches_truncations(&b);
        }
    }

    fn walks_and_catches_truncations(b: &[u8]) {
        assert_eq!(check_header(b, b.len() as u64), Ok(()));
        assert_eq!(check_nodes(b), Ok(()));
        for cut in 0..b.len() {
            let t = &b[..cut];
            assert!(
                check_header(t, cut as u64)
                    .and_then(|()| check_nodes(t))
                    .is_err(),
                "cut at {cut} passed"
            );
        }
    }

    #[test]
    fn walks_refuse_bad_nodes() {
        let sound = small_index();
        let root = (u32::from_be_bytes(sound[8..12].try_into().unwrap()) & OFFSET_MASK) as usize;
        let leaf = 12;
        let mut cases: Vec<(Vec<u8>, &str)> = Vec::new();
        // A child pointing at its parent (a cycle) or past the end.
        let mut b = sound.clone();
        b[root + 2..root + 6].copy_from_slice(&(root as u32 | HAS_CHILDREN).to_be_bytes());
        cases.push((b, "reached twice"));
        let mut b = sound.clone();
        b[root + 2..root + 6].copy_from_slice(&(sound.len() as u32 | HAS_PREFIX).to_be_bytes());
        cases.push((b, "outside the file"));
        // A bad child range.
        let mut b = sound.clone();
        b[root] = b'z';
        cases.push((b, "child range"));
        // A value count far past the file.
        let mut b = sound.clone();
        b[leaf + 3..leaf + 7].copy_from_slice(&0x00FF_FFFFu32.to_be_bytes());
        cases.push((b, "values"));
        // A prefix without its NUL up to the end.
        let mut b = sound.clone();
        for byte in &mut b[root..] {
            *byte = b'x';
        }
        b[8..12].copy_from_slice(&(root as u32 | HAS_PREFIX).to_be_bytes());
        cases.push((b, "runs past the end"));
        for (bytes, needle) in cases {
            let err = check_nodes(&bytes).unwrap_err();
            assert!(err.contains(needle), "{needle}: {err}");
        }
    }

    #[test]
    fn an_empty_index_is_no_entries_a_short_one_is_damaged() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("modules.builtin.alias.bin"), b"").unwrap();
        assert_eq!(check_tree(dir.path()), Ok(()));
        for len in 1..12 {
            std::fs::write(
                dir.path().join("modules.builtin.alias.bin"),
                vec![0xB0; len],
            )
            .unwrap();
            let (path, why) = check_tree(dir.path()).unwrap_err();
            assert!(path.ends_with("modules.builtin.alias.bin"), "{path:?}");
            assert!(why.contains("header"), "{len} bytes: {why}");
        }
    }

    #[test]
    fn a_file_found_sound_is_checked_again_once_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("modules.dep.bin");
        let good = small_index();
        std::fs::write(&path, &good).unwrap();
        assert_eq!(check_tree(dir.path()), Ok(()));
        assert_eq!(check_tree(dir.path()), Ok(()), "the cached verdict");
        // Replaced by a damaged file of the same size (a new inode, as
        // depmod's rename makes).
        let mut bad = good.clone();
        let n = bad.len();
        bad[8..12].copy_from_slice(&(0x8000_0000u32 | n as u32).to_be_bytes());
        let tmp = dir.path().join("tmp");
        std::fs::write(&tmp, &bad).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        let (damaged, why) = check_tree(dir.path()).unwrap_err();
        assert_eq!(damaged, path);
        assert!(why.contains("outside"), "{why}");
    }

    /// A trie node as depmod builds one: prefix, children by first byte,
    /// values.
    #[derive(Default)]
    struct Node {
        prefix: Vec<u8>,
        children: std::collections::BTreeMap<u8, Node>,
        values: Vec<Vec<u8>>,
    }

    /// A plain (uncompressed-path) trie of `keys`: every key byte its own
    /// level, the rest of a lone path as a prefix.
    fn trie(keys: &[(Vec<u8>, Vec<u8>)]) -> Node {
        let mut root = Node::default();
        for (key, value) in keys {
            let mut node = &mut root;
            for &byte in key {
                node = node.children.entry(byte).or_default();
            }
            node.values.push(value.clone());
        }
        // A node with one child and no values takes the child's byte and
        // prefix into its own prefix (depmod's path compression), so the
        // prefix flag is exercised too.
        fn squash(node: &mut Node) {
            while node.values.is_empty() && node.children.len() == 1 {
                let (byte, child) = node.children.pop_first().unwrap();
                node.prefix.push(byte);
                node.prefix.extend(child.prefix);
                node.children = child.children;
                node.values = child.values;
            }
            node.children.values_mut().for_each(squash);
        }
        root.children.values_mut().for_each(squash);
        root
    }

    /// Serialises `node` into `out`; returns its word (offset | flags).
    /// `root_first`: the parent before its children (kmod 34), else the
    /// children first (kmod ≤ 33). Child slots are patched once known.
    fn write(node: &Node, out: &mut Vec<u8>, root_first: bool) -> u32 {
        let mut flags = 0;
        if !node.prefix.is_empty() {
            flags |= HAS_PREFIX;
        }
        if !node.children.is_empty() {
            flags |= HAS_CHILDREN;
        }
        if !node.values.is_empty() {
            flags |= HAS_VALUES;
        }
        let (first, last) = match (node.children.keys().next(), node.children.keys().last()) {
            (Some(&f), Some(&l)) => (f, l),
            _ => (0, 0),
        };
        let mut words = std::collections::BTreeMap::new();
        if !root_first {
            for (&b, child) in &node.children {
                words.insert(b, write(child, out, root_first));
            }
        }
        let offset = out.len() as u32;
        if !node.prefix.is_empty() {
            out.extend(&node.prefix);
            out.push(0);
        }
        let mut slots = out.len() + 2;
        if !node.children.is_empty() {
            out.extend([first, last]);
            for b in first..=last {
                out.extend(words.get(&b).copied().unwrap_or(0).to_be_bytes());
            }
        }
        if !node.values.is_empty() {
            out.extend((node.values.len() as u32).to_be_bytes());
            for v in &node.values {
                out.extend(0u32.to_be_bytes());
                out.extend(v);
                out.push(0);
            }
        }
        if root_first {
            for b in first..=last {
                if let Some(child) = node.children.get(&b) {
                    let word = write(child, out, root_first);
                    out[slots..slots + 4].copy_from_slice(&word.to_be_bytes());
                }
                slots += 4;
            }
        }
        offset | flags
    }

    fn index_of(keys: &[(Vec<u8>, Vec<u8>)], root_first: bool) -> Vec<u8> {
        let mut b = header(MAGIC, 0x0002_0001, 0);
        let root = write(&trie(keys), &mut b, root_first);
        b[8..12].copy_from_slice(&root.to_be_bytes());
        b
    }

    /// Offsets of every child slot and the offset of the node holding it.
    fn child_slots(b: &[u8]) -> Vec<(usize, usize)> {
        let u32_at = |at: usize| u32::from_be_bytes(b[at..at + 4].try_into().unwrap());
        let mut slots = Vec::new();
        let mut pending = vec![u32_at(8)];
        while let Some(word) = pending.pop() {
            let offset = (word & OFFSET_MASK) as usize;
            if offset == 0 {
                continue;
            }
            let mut at = offset;
            if word & HAS_PREFIX != 0 {
                at += b[at..].iter().position(|&c| c == 0).unwrap() + 1;
            }
            if word & HAS_CHILDREN != 0 {
                let (first, last) = (b[at], b[at + 1]);
                at += 2;
                for _ in first..=last {
                    if u32_at(at) != 0 {
                        slots.push((at, offset));
                        pending.push(u32_at(at));
                    }
                    at += 4;
                }
            }
        }
        slots
    }

    fn keys() -> impl proptest::strategy::Strategy<Value = Vec<(Vec<u8>, Vec<u8>)>> {
        use proptest::prelude::*;
        let key = proptest::collection::vec(prop::sample::select(b"abcde_-*".to_vec()), 1..8);
        let value = proptest::collection::vec(b'a'..=b'z', 1..6);
        proptest::collection::vec((key, value), 1..30)
    }

    proptest::proptest! {
        /// Both node orders depmod has used are accepted, and every cut
        /// short of the whole file is refused.
        #[test]
        fn either_node_order_is_accepted(keys in keys()) {
            for root_first in [false, true] {
                let b = index_of(&keys, root_first);
                proptest::prop_assert_eq!(check_nodes(&b), Ok(()), "root_first {}", root_first);
                for cut in 12..b.len() {
                    proptest::prop_assert!(check_nodes(&b[..cut]).is_err() || check_header(&b[..cut], cut as u64).is_err());
                }
            }
        }

        /// A child slot pointed back at the node holding it, or at the
        /// root, is a cycle in either order: refused, not walked forever.
        #[test]
        fn a_cycle_is_refused_in_either_order(keys in keys(), pick in 0usize..1000) {
            for root_first in [false, true] {
                let mut b = index_of(&keys, root_first);
                let slots = child_slots(&b);
                if slots.is_empty() {
                    continue;
                }
                let (slot, holder) = slots[pick % slots.len()];
                let root = u32::from_be_bytes(b[8..12].try_into().unwrap());
                let holder_word = [root]
                    .into_iter()
                    .chain(child_slots(&b).iter().map(|&(s, _)| u32::from_be_bytes(b[s..s + 4].try_into().unwrap())))
                    .find(|w| (w & OFFSET_MASK) as usize == holder)
                    .unwrap();
                let target = if pick % 2 == 0 { holder_word } else { root };
                b[slot..slot + 4].copy_from_slice(&target.to_be_bytes());
                let err = check_nodes(&b).unwrap_err();
                proptest::prop_assert!(err.contains("reached twice"), "{}", err);
            }
        }
    }
}
