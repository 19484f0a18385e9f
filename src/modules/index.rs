//! Sanity check of a module tree's binary indexes (`modules.dep.bin`, …)
//! before the tree is handed to libkmod, which maps them and follows their
//! offsets unchecked: a truncated or garbage index crashes it (and
//! modprobe). The format (libkmod-index.c): big-endian u32 magic
//! `0xB007F457`, u32 version (major 2 in the high half), u32 offset of the
//! root node (flags in the top 4 bits). depmod writes the root last, so a
//! truncated file has its root offset past the end.

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
    let mut header = Vec::with_capacity(HEADER_LEN as usize);
    (&mut file)
        .take(HEADER_LEN)
        .read_to_end(&mut header)
        .map_err(|e| format!("cannot read: {e}"))?;
    check_header(&header, meta.len())
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
}
