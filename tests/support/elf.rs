//! A small reader of the ELF facts the portable-binary check needs (tests
//! only): file type, machine, interpreter, RELRO, dynamic flags, NEEDED
//! libraries and the symbol versions needed from them (`.gnu.version_r`).
//! 64-bit little-endian files only (x86_64, aarch64). `readelf` is the
//! oracle it is checked against (tests/portable_binary.rs).
#![allow(dead_code)]

use std::fmt;

pub const ET_EXEC: u16 = 2;
pub const ET_DYN: u16 = 3;
pub const EM_X86_64: u16 = 62;
pub const EM_AARCH64: u16 = 183;

const PT_INTERP: u32 = 3;
const PT_GNU_RELRO: u32 = 0x6474_e552;
const SHT_DYNAMIC: u32 = 6;
const SHT_GNU_VERNEED: u32 = 0x6fff_fffe;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_FLAGS: u64 = 30;
const DT_FLAGS_1: u64 = 0x6fff_fffb;
const DF_BIND_NOW: u64 = 0x8;
const DF_1_NOW: u64 = 0x1;

/// One needed symbol version: `GLIBC_2.14` from `libc.so.6`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct VersionNeed {
    pub file: String,
    pub version: String,
}

/// What the check reads from one ELF file.
#[derive(Debug)]
pub struct ElfFacts {
    pub file_type: u16,
    pub machine: u16,
    pub interpreter: Option<String>,
    pub has_relro: bool,
    pub bind_now: bool,
    pub needed: Vec<String>,
    pub version_needs: Vec<VersionNeed>,
}

#[derive(Debug)]
pub struct ElfError(String);

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn bad(what: impl Into<String>) -> ElfError {
    ElfError(what.into())
}

struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn slice(&self, offset: u64, len: u64) -> Result<&[u8], ElfError> {
        let start = usize::try_from(offset).map_err(|_| bad("offset too large"))?;
        let len = usize::try_from(len).map_err(|_| bad("length too large"))?;
        let end = start
            .checked_add(len)
            .ok_or_else(|| bad("range overflows"))?;
        self.0.get(start..end).ok_or_else(|| {
            bad(format!(
                "range {start}..{end} is past the end of the file ({} bytes)",
                self.0.len()
            ))
        })
    }
    fn u16(&self, offset: u64) -> Result<u16, ElfError> {
        Ok(u16::from_le_bytes(
            self.slice(offset, 2)?.try_into().expect("2 bytes"),
        ))
    }
    fn u32(&self, offset: u64) -> Result<u32, ElfError> {
        Ok(u32::from_le_bytes(
            self.slice(offset, 4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&self, offset: u64) -> Result<u64, ElfError> {
        Ok(u64::from_le_bytes(
            self.slice(offset, 8)?.try_into().expect("8 bytes"),
        ))
    }
    /// A NUL-terminated string starting at `offset`.
    fn c_str(&self, offset: u64) -> Result<String, ElfError> {
        let start = usize::try_from(offset).map_err(|_| bad("string offset too large"))?;
        let rest = self
            .0
            .get(start..)
            .ok_or_else(|| bad("string offset past the end"))?;
        let len = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| bad("unterminated string"))?;
        String::from_utf8(rest[..len].to_vec()).map_err(|_| bad("string is not UTF-8"))
    }
}

struct Section {
    kind: u32,
    offset: u64,
    size: u64,
    link: u32,
}

/// Reads the facts from the bytes of an ELF file.
pub fn read(data: &[u8]) -> Result<ElfFacts, ElfError> {
    let b = Bytes(data);
    if b.slice(0, 4)? != b"\x7fELF" {
        return Err(bad("not an ELF file"));
    }
    if b.slice(4, 2)? != [2, 1] {
        return Err(bad("not a 64-bit little-endian ELF file"));
    }
    let file_type = b.u16(16)?;
    let machine = b.u16(18)?;
    let phoff = b.u64(32)?;
    let shoff = b.u64(40)?;
    let phentsize = u64::from(b.u16(54)?);
    let phnum = u64::from(b.u16(56)?);
    let shentsize = u64::from(b.u16(58)?);
    let shnum = u64::from(b.u16(60)?);

    let mut interpreter = None;
    let mut has_relro = false;
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        match b.u32(ph)? {
            PT_INTERP => {
                interpreter = Some(b.c_str(b.u64(ph + 8)?)?);
            }
            PT_GNU_RELRO => has_relro = true,
            _ => {}
        }
    }

    let sections = (0..shnum)
        .map(|i| {
            let sh = shoff + i * shentsize;
            Ok(Section {
                kind: b.u32(sh + 4)?,
                offset: b.u64(sh + 24)?,
                size: b.u64(sh + 32)?,
                link: b.u32(sh + 40)?,
            })
        })
        .collect::<Result<Vec<_>, ElfError>>()?;
    let strtab_of = |s: &Section| {
        sections
            .get(s.link as usize)
            .map(|t| t.offset)
            .ok_or_else(|| bad("section link points to no section"))
    };

    let mut needed = Vec::new();
    let mut bind_now = false;
    let dynamic = sections
        .iter()
        .find(|s| s.kind == SHT_DYNAMIC)
        .ok_or_else(|| bad("no .dynamic section (a static binary?)"))?;
    let dynstr = strtab_of(dynamic)?;
    for i in 0..dynamic.size / 16 {
        let tag = b.u64(dynamic.offset + i * 16)?;
        let value = b.u64(dynamic.offset + i * 16 + 8)?;
        match tag {
            DT_NULL => break,
            DT_NEEDED => needed.push(b.c_str(dynstr + value)?),
            DT_FLAGS if value & DF_BIND_NOW != 0 => bind_now = true,
            DT_FLAGS_1 if value & DF_1_NOW != 0 => bind_now = true,
            _ => {}
        }
    }

    let mut version_needs = Vec::new();
    if let Some(verneed) = sections.iter().find(|s| s.kind == SHT_GNU_VERNEED) {
        let strtab = strtab_of(verneed)?;
        // Elf64_Verneed: vn_version u16, vn_cnt u16, vn_file u32, vn_aux u32,
        // vn_next u32; Elf64_Vernaux: vna_hash u32, vna_flags u16, vna_other
        // u16, vna_name u32, vna_next u32. Offsets are relative to the entry.
        let mut entry = verneed.offset;
        loop {
            let count = b.u16(entry + 2)?;
            let file = b.c_str(strtab + u64::from(b.u32(entry + 4)?))?;
            let mut aux = entry + u64::from(b.u32(entry + 8)?);
            for _ in 0..count {
                let version = b.c_str(strtab + u64::from(b.u32(aux + 8)?))?;
                version_needs.push(VersionNeed {
                    file: file.clone(),
                    version,
                });
                let next = b.u32(aux + 12)?;
                if next == 0 {
                    break;
                }
                aux += u64::from(next);
            }
            let next = b.u32(entry + 12)?;
            if next == 0 {
                break;
            }
            entry += u64::from(next);
        }
    }
    version_needs.sort();

    Ok(ElfFacts {
        file_type,
        machine,
        interpreter,
        has_relro,
        bind_now,
        needed,
        version_needs,
    })
}

/// `GLIBC_2.3.4` → `[2, 3, 4]`; `None` for anything else (`GLIBC_PRIVATE`,
/// `GCC_3.0`, ...).
pub fn glibc_version(name: &str) -> Option<Vec<u32>> {
    let numbers = name.strip_prefix("GLIBC_")?;
    numbers.split('.').map(|part| part.parse().ok()).collect()
}

/// The highest `GLIBC_x.y[.z]` version among `needs`, with its name, or an
/// error naming a `GLIBC_` version that is not a number (`GLIBC_PRIVATE`:
/// no release promises it).
pub fn highest_glibc(needs: &[VersionNeed]) -> Result<Option<(Vec<u32>, String)>, String> {
    let mut highest: Option<(Vec<u32>, String)> = None;
    for need in needs.iter().filter(|n| n.version.starts_with("GLIBC_")) {
        let version = glibc_version(&need.version).ok_or_else(|| {
            format!(
                "{} from {} is not a numbered glibc version",
                need.version, need.file
            )
        })?;
        if highest.as_ref().is_none_or(|(h, _)| version > *h) {
            highest = Some((version, need.version.clone()));
        }
    }
    Ok(highest)
}
