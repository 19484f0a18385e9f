//! The dm-log-writes log format, as qemu's `blklogwrites` driver writes it
//! (read from the kernel's Documentation/admin-guide/device-mapper/
//! log-writes.rst and drivers/md/dm-log-writes.c, and qemu's
//! block/blklogwrites.c; checked against logs qemu-io writes, see the tests).
//!
//! Layout, all little-endian, in units of the log's sector size:
//! - sector 0: super block `magic u64, version u64, nr_entries u64,
//!   sectorsize u32`;
//! - from sector 1, one entry after another: a header sector
//!   `sector u64, nr_sectors u64, flags u64, data_len u64` (the rest of the
//!   sector is zero, or a mark's text of `data_len` bytes), then the written
//!   data, `nr_sectors` sectors, except for discards (no data).
//!
//! `sector`/`nr_sectors` count sectors of the log's size on the logged disk.
//! qemu logs a flush as an entry with only the FLUSH flag, and a
//! write-zeroes request as a write whose data are zeros.

pub const MAGIC: u64 = 0x006a_7366_7773_6872;
pub const VERSION: u64 = 1;
pub const FLUSH: u64 = 1 << 0;
pub const FUA: u64 = 1 << 1;
pub const DISCARD: u64 = 1 << 2;
pub const MARK: u64 = 1 << 3;
pub const METADATA: u64 = 1 << 4;
const KNOWN: u64 = FLUSH | FUA | DISCARD | MARK | METADATA;

/// One request of the guest, in the order the log has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `data` written at byte `offset` of the disk.
    Write { offset: u64, data: Vec<u8> },
    /// `len` bytes at `offset` discarded (replayed as zeros).
    Discard { offset: u64, len: u64 },
    /// Everything completed before is durable.
    Flush,
    /// A dm-log-writes mark (never written by qemu; kept for completeness).
    Mark(String),
}

#[derive(Debug)]
pub struct Log {
    pub sector_size: u64,
    pub ops: Vec<Op>,
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// Parses a whole log file. A preflush entry with data becomes a flush then
/// the write; a FUA write becomes the write then a flush (stricter than FUA,
/// which makes only that write durable: it can only hide crash states, never
/// invent one; virtio-blk sends no FUA).
pub fn parse(bytes: &[u8]) -> Result<Log, String> {
    if bytes.len() < 28 {
        return Err(format!("log of {} bytes has no super block", bytes.len()));
    }
    if le64(bytes, 0) != MAGIC {
        return Err(format!("bad magic {:#x}", le64(bytes, 0)));
    }
    if le64(bytes, 8) != VERSION {
        return Err(format!("unsupported version {}", le64(bytes, 8)));
    }
    let nr_entries = le64(bytes, 16);
    let ss = u64::from(u32::from_le_bytes(bytes[24..28].try_into().unwrap()));
    if ss < 32 || !ss.is_power_of_two() {
        return Err(format!("bad sector size {ss}"));
    }
    let mut ops = Vec::new();
    let mut sector = 1u64;
    for i in 0..nr_entries {
        let at = usize::try_from(sector * ss).unwrap();
        if at + 32 > bytes.len() {
            return Err(format!(
                "entry {i} of {nr_entries}: header at byte {at} is past the end ({} bytes)",
                bytes.len()
            ));
        }
        let (dsector, nr, flags, data_len) = (
            le64(bytes, at),
            le64(bytes, at + 8),
            le64(bytes, at + 16),
            le64(bytes, at + 24),
        );
        if flags & !KNOWN != 0 {
            return Err(format!("entry {i}: unknown flags {flags:#x}"));
        }
        sector += 1;
        if flags & MARK != 0 {
            let text = &bytes[at + 32..at + 32 + usize::try_from(data_len).unwrap()];
            ops.push(Op::Mark(String::from_utf8_lossy(text).into_owned()));
            continue;
        }
        if flags & FLUSH != 0 {
            ops.push(Op::Flush);
        }
        if flags & DISCARD != 0 {
            ops.push(Op::Discard {
                offset: dsector * ss,
                len: nr * ss,
            });
            continue;
        }
        if nr > 0 {
            let start = usize::try_from(sector * ss).unwrap();
            let end = start + usize::try_from(nr * ss).unwrap();
            if end > bytes.len() {
                return Err(format!("entry {i}: data past the end of the log"));
            }
            ops.push(Op::Write {
                offset: dsector * ss,
                data: bytes[start..end].to_vec(),
            });
            sector += nr;
            if flags & FUA != 0 {
                ops.push(Op::Flush);
            }
        }
    }
    Ok(Log {
        sector_size: ss,
        ops,
    })
}

/// Applies one op to an in-memory disk image.
pub fn apply(image: &mut [u8], op: &Op) {
    match op {
        Op::Write { offset, data } => {
            let o = usize::try_from(*offset).unwrap();
            image[o..o + data.len()].copy_from_slice(data);
        }
        Op::Discard { offset, len } => {
            let o = usize::try_from(*offset).unwrap();
            image[o..o + usize::try_from(*len).unwrap()].fill(0);
        }
        Op::Flush | Op::Mark(_) => {}
    }
}
