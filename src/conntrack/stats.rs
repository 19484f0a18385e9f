//! Codec for ctnetlink statistics messages (pure: bytes in, structs out, and
//! back).
//!
//! Kernel interface: `include/uapi/linux/netfilter/nfnetlink_conntrack.h`,
//! `enum ctattr_stats_cpu`, `enum ctattr_stats_global`,
//! `enum ctattr_expect_stats`. All counter values are big-endian `u32`
//! attributes. `netlink-packet-netfilter` 0.4 has no typed stats messages;
//! they travel as `ConntrackMessage::Other`, and this module gives their
//! attributes meaning. Unknown attribute types are kept, never dropped, so a
//! newer kernel's counters still show up.

use netlink_packet_core::{DefaultNla, NlaBuffer, NlasIterator};
use serde::Serialize;

/// `IPCTNL_MSG_CT_GET_STATS_CPU`: per-CPU counters, answered only to a dump.
pub const IPCTNL_MSG_CT_GET_STATS_CPU: u8 = 4;
/// `IPCTNL_MSG_CT_GET_STATS`: global entry count and maximum.
pub const IPCTNL_MSG_CT_GET_STATS: u8 = 5;
/// `IPCTNL_MSG_EXP_GET_STATS_CPU` (subsystem `CTNETLINK_EXP`); the kernel
/// answers with subsystem 1, type 3 (see reference §1.2).
pub const IPCTNL_MSG_EXP_GET_STATS_CPU: u8 = 3;

const CTA_STATS_GLOBAL_ENTRIES: u16 = 1;
const CTA_STATS_GLOBAL_MAX_ENTRIES: u16 = 2;

/// One per-CPU conntrack counter (`enum ctattr_stats_cpu`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum CpuCounter {
    /// `CTA_STATS_SEARCHED` (removed from kernels in 4.10).
    Searched,
    Found,
    /// `CTA_STATS_NEW` (removed in 4.10).
    New,
    Invalid,
    /// `CTA_STATS_IGNORE` (removed in 5.10).
    Ignore,
    /// `CTA_STATS_DELETE` (removed in 4.10).
    Delete,
    /// `CTA_STATS_DELETE_LIST` (removed in 4.10).
    DeleteList,
    Insert,
    InsertFailed,
    Drop,
    EarlyDrop,
    Error,
    SearchRestart,
    ClashResolve,
    ChainTooLong,
    /// A counter this build does not know; the attribute type is kept.
    Other(u16),
}

impl CpuCounter {
    /// Maps an attribute type to a counter.
    pub fn from_kind(kind: u16) -> Self {
        match kind {
            1 => Self::Searched,
            2 => Self::Found,
            3 => Self::New,
            4 => Self::Invalid,
            5 => Self::Ignore,
            6 => Self::Delete,
            7 => Self::DeleteList,
            8 => Self::Insert,
            9 => Self::InsertFailed,
            10 => Self::Drop,
            11 => Self::EarlyDrop,
            12 => Self::Error,
            13 => Self::SearchRestart,
            14 => Self::ClashResolve,
            15 => Self::ChainTooLong,
            other => Self::Other(other),
        }
    }

    /// The attribute type on the wire.
    pub fn kind(self) -> u16 {
        match self {
            Self::Searched => 1,
            Self::Found => 2,
            Self::New => 3,
            Self::Invalid => 4,
            Self::Ignore => 5,
            Self::Delete => 6,
            Self::DeleteList => 7,
            Self::Insert => 8,
            Self::InsertFailed => 9,
            Self::Drop => 10,
            Self::EarlyDrop => 11,
            Self::Error => 12,
            Self::SearchRestart => 13,
            Self::ClashResolve => 14,
            Self::ChainTooLong => 15,
            Self::Other(kind) => kind,
        }
    }

    /// The name `conntrack -S` prints (`attr_N` for unknown ones).
    pub fn name(self) -> String {
        let known = match self {
            Self::Searched => "searched",
            Self::Found => "found",
            Self::New => "new",
            Self::Invalid => "invalid",
            Self::Ignore => "ignore",
            Self::Delete => "delete",
            Self::DeleteList => "delete_list",
            Self::Insert => "insert",
            Self::InsertFailed => "insert_failed",
            Self::Drop => "drop",
            Self::EarlyDrop => "early_drop",
            Self::Error => "error",
            Self::SearchRestart => "search_restart",
            Self::ClashResolve => "clash_resolve",
            Self::ChainTooLong => "chaintoolong",
            Self::Other(kind) => return format!("attr_{kind}"),
        };
        known.to_string()
    }
}

/// Counters in the order the kernel sent them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters(pub Vec<(CpuCounter, u64)>);

impl Counters {
    /// The value of one counter, if the kernel sent it.
    pub fn get(&self, counter: CpuCounter) -> Option<u64> {
        self.0
            .iter()
            .find(|(c, _)| *c == counter)
            .map(|(_, value)| *value)
    }

    /// Adds `value` to `counter`, appending it when new.
    pub fn add(&mut self, counter: CpuCounter, value: u64) {
        match self.0.iter_mut().find(|(c, _)| *c == counter) {
            Some((_, total)) => *total = total.saturating_add(value),
            None => self.0.push((counter, value)),
        }
    }

    /// The sum of several sets of counters (order of first appearance).
    pub fn sum<'a>(sets: impl IntoIterator<Item = &'a Counters>) -> Counters {
        let mut total = Counters::default();
        for set in sets {
            for (counter, value) in &set.0 {
                total.add(*counter, *value);
            }
        }
        total
    }
}

impl Serialize for Counters {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (counter, value) in &self.0 {
            map.serialize_entry(&counter.name(), value)?;
        }
        map.end()
    }
}

/// Counters of one CPU, from one `GET_STATS_CPU` dump message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CpuStats {
    /// CPU id from `nfgenmsg.res_id`; ids can have gaps.
    pub cpu: u16,
    /// The counters, in wire order.
    pub counters: Counters,
}

/// The `GET_STATS` reply: entries in this network namespace and the maximum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GlobalStats {
    /// `CTA_STATS_GLOBAL_ENTRIES`: entries in the socket's namespace.
    pub entries: u32,
    /// `CTA_STATS_GLOBAL_MAX_ENTRIES`: absent before Linux 4.18.
    pub max_entries: Option<u32>,
    /// Attributes this build does not know, kept as `(type, bytes)`.
    #[serde(skip)]
    pub other: Vec<(u16, Vec<u8>)>,
}

/// Errors of the stats codec.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// An attribute header or length is inconsistent.
    #[error("bad attribute in {what}: {detail}")]
    BadAttribute { what: &'static str, detail: String },
    /// A counter value is neither 4 nor 8 bytes long.
    #[error("{what}: attribute {kind} has a {len}-byte value, expected 4 or 8")]
    BadValueLength {
        what: &'static str,
        kind: u16,
        len: usize,
    },
    /// The global stats reply lacks the entry count.
    #[error("conntrack global statistics without CTA_STATS_GLOBAL_ENTRIES")]
    MissingEntries,
}

/// Reads a big-endian counter of 4 or 8 bytes.
fn be_value(what: &'static str, kind: u16, value: &[u8]) -> Result<u64, DecodeError> {
    match value.len() {
        4 => Ok(u64::from(u32::from_be_bytes([
            value[0], value[1], value[2], value[3],
        ]))),
        8 => Ok(u64::from_be_bytes([
            value[0], value[1], value[2], value[3], value[4], value[5], value[6], value[7],
        ])),
        len => Err(DecodeError::BadValueLength { what, kind, len }),
    }
}

/// Walks the attributes of a stats message (after the 4-byte nfgenmsg).
fn for_each_attribute(
    what: &'static str,
    attributes: &[u8],
    mut f: impl FnMut(u16, &[u8]) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    for nla in NlasIterator::new(attributes) {
        let nla: NlaBuffer<&[u8]> = nla.map_err(|e| DecodeError::BadAttribute {
            what,
            detail: e.to_string(),
        })?;
        f(nla.kind(), nla.value())?;
    }
    Ok(())
}

/// Decodes the attributes of one per-CPU stats message.
pub fn decode_cpu_counters(attributes: &[u8]) -> Result<Counters, DecodeError> {
    let what = "conntrack per-CPU statistics";
    let mut counters = Counters::default();
    for_each_attribute(what, attributes, |kind, value| {
        counters
            .0
            .push((CpuCounter::from_kind(kind), be_value(what, kind, value)?));
        Ok(())
    })?;
    Ok(counters)
}

/// Decodes the attributes of the global stats reply.
pub fn decode_global(attributes: &[u8]) -> Result<GlobalStats, DecodeError> {
    let what = "conntrack global statistics";
    let mut entries = None;
    let mut max_entries = None;
    let mut other = Vec::new();
    for_each_attribute(what, attributes, |kind, value| {
        match kind {
            CTA_STATS_GLOBAL_ENTRIES => entries = Some(be_value(what, kind, value)?),
            CTA_STATS_GLOBAL_MAX_ENTRIES => max_entries = Some(be_value(what, kind, value)?),
            _ => other.push((kind, value.to_vec())),
        }
        Ok(())
    })?;
    let clamp = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    Ok(GlobalStats {
        entries: clamp(entries.ok_or(DecodeError::MissingEntries)?),
        max_entries: max_entries.map(clamp),
        other,
    })
}

/// Encodes counters as the kernel does (u32 BE; u64 when a value needs it).
pub fn encode_cpu_counters(counters: &Counters) -> Vec<DefaultNla> {
    counters
        .0
        .iter()
        .map(|(counter, value)| be_nla(counter.kind(), *value))
        .collect()
}

/// Encodes a global stats reply's attributes.
pub fn encode_global(stats: &GlobalStats) -> Vec<DefaultNla> {
    let mut nlas = vec![be_nla(CTA_STATS_GLOBAL_ENTRIES, stats.entries.into())];
    if let Some(max) = stats.max_entries {
        nlas.push(be_nla(CTA_STATS_GLOBAL_MAX_ENTRIES, max.into()));
    }
    nlas.extend(
        stats
            .other
            .iter()
            .map(|(kind, bytes)| DefaultNla::new(*kind, bytes.clone())),
    );
    nlas
}

fn be_nla(kind: u16, value: u64) -> DefaultNla {
    match u32::try_from(value) {
        Ok(small) => DefaultNla::new(kind, small.to_be_bytes().to_vec()),
        Err(_) => DefaultNla::new(kind, value.to_be_bytes().to_vec()),
    }
}
