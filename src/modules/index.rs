//! Sanity check of a module tree's binary indexes (`modules.dep.bin`, …)
//! before the tree is handed to libkmod, which maps them and follows their
//! offsets unchecked: a truncated or garbage index crashes it (and
//! modprobe). The format (libkmod-index.c): big-endian u32 magic
//! `0xB007F457`, u32 version (major 2 in the high half), u32 offset of the
//! root node (flags in the top 4 bits). depmod writes the root last, so a
//! truncated file has its root offset past the end.
//!
//! Then every node is walked ([`check_nodes`]): a node is an optional
//! NUL-terminated prefix, optional children (`first`, `last` bytes, then
//! `last - first + 1` u32 offsets), optional values (u32 count, then per
//! value a u32 priority and a NUL-terminated string). Each must lie inside
//! the file, and a child must lie before its parent (depmod writes children
//! first), which also rules out cycles. Linear in the file's size.

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
    // (node word, offset of its parent: children lie before it).
    let mut pending = vec![(u32_at(8)?, end)];
    while let Some((word, parent)) = pending.pop() {
        let offset = (word & OFFSET_MASK) as usize;
        if offset == 0 {
            continue;
        }
        if offset < HEADER_LEN as usize || offset >= parent {
            return Err(format!(
                "node at offset {offset} outside the file or not before its parent at {parent}"
            ));
        }
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

/// Checks every index present in `module_dir`; a missing one is fine
/// (libkmod then finds nothing). Returns the damaged file and why.
pub(crate) fn check_tree(module_dir: &Path) -> Result<(), (PathBuf, String)> {
    for name in INDEX_FILES {
        let path = module_dir.join(name);
        check_file(&path).map_err(|why| (path, why))?;
    }
    Ok(())
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
    let cap = crate::read::Kind::ModuleIndex.cap() as u64;
    if meta.len() > cap {
        return Err(format!("larger than {cap} bytes"));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    (&mut file)
        .take(cap)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    check_header(&bytes, bytes.len() as u64)?;
    check_nodes(&bytes)
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

    /// A two-key index as depmod lays it out: children before parents.
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

    #[test]
    fn walks_a_sound_index_and_catches_every_truncation() {
        let b = small_index();
        assert_eq!(check_header(&b, b.len() as u64), Ok(()));
        assert_eq!(check_nodes(&b), Ok(()));
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
        // A child pointing at its parent (a cycle) or after it.
        let mut b = sound.clone();
        b[root + 2..root + 6].copy_from_slice(&(root as u32 | HAS_CHILDREN).to_be_bytes());
        cases.push((b, "not before its parent"));
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
}
