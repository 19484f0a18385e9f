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

#[cfg(test)]
mod tests {
    //! Byte vectors captured on Linux 6.18 (conntrack-and-tables.md §1.4),
    //! decoded and re-encoded byte for byte.
    use super::*;
    use crate::netlink::{self, split_frames};
    use netlink_packet_core::{NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkMessage};
    use netlink_packet_netfilter::{
        NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
        conntrack::ConntrackMessage,
    };

    fn hex(text: &str) -> Vec<u8> {
        text.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    /// Re-serialises a whole frame through netlink-packet-netfilter.
    fn reemit(frame: &[u8]) -> Vec<u8> {
        let message = NetlinkMessage::<NetfilterMessage>::deserialize(frame).unwrap();
        let mut out = vec![0u8; message.buffer_len()];
        message.serialize(&mut out);
        out
    }

    /// Builds the stats message our codec would produce for these values.
    fn encode_frame(
        template: &[u8],
        message_type: u8,
        res_id: u16,
        attributes: Vec<DefaultNla>,
    ) -> Vec<u8> {
        let original = NetlinkMessage::<NetfilterMessage>::deserialize(template).unwrap();
        let mut message = NetlinkMessage::new(
            original.header,
            netlink_packet_core::NetlinkPayload::InnerMessage(NetfilterMessage::new(
                NetfilterHeader::new(NetfilterProtoFamily::Unspec, 0, res_id),
                ConntrackMessage::Other {
                    message_type,
                    attributes,
                },
            )),
        );
        message.finalize();
        let mut out = vec![0u8; message.buffer_len()];
        message.serialize(&mut out);
        out
    }

    const CPU_REQUEST: &str = "14 00 00 00 04 01 01 03 01 00 00 00 00 00 00 00 00 00 00 00";
    const CPU_REPLY: &str = "64 00 00 00 04 01 02 00 01 00 00 00 88 3e 00 00 00 00 00 01 \
        08 00 02 00 00 00 00 00  08 00 04 00 00 00 00 00  08 00 08 00 00 00 00 01 \
        08 00 09 00 00 00 00 00  08 00 0a 00 00 00 00 01  08 00 0b 00 00 00 00 00 \
        08 00 0c 00 00 00 00 00  08 00 0d 00 00 00 00 00  08 00 0e 00 00 00 00 00 \
        08 00 0f 00 00 00 00 00";
    const DONE: &str = "14 00 00 00 03 00 02 00 01 00 00 00 88 3e 00 00 00 00 00 00";
    const GLOBAL_REQUEST: &str = "14 00 00 00 05 01 01 00 01 00 00 00 00 00 00 00 00 00 00 00";
    const GLOBAL_REPLY: &str = "24 00 00 00 05 01 02 00 01 00 00 00 5f 3e 00 00 00 00 00 00 \
        08 00 01 00 00 00 00 04 08 00 02 00 00 00 00 04";
    const ACK: &str = "24 00 00 00 02 00 00 01 01 00 00 00 e3 1f 00 00 00 00 00 00 \
        14 00 00 00 05 01 05 00 01 00 00 00 00 00 00 00";
    const EXP_REPLY: &str = "2c 00 00 00 03 01 02 00 01 00 00 00 a2 20 00 00 00 00 00 00 \
        08 00 01 00 00 00 00 00 08 00 02 00 00 00 00 00 08 00 03 00 00 00 00 00";

    #[test]
    fn requests_match_conntrack_tools_bytes() {
        let cpu = netlink::encode_request(
            NetfilterMessage::new(
                NetfilterHeader::new(NetfilterProtoFamily::Unspec, 0, 0),
                ConntrackMessage::Other {
                    message_type: IPCTNL_MSG_CT_GET_STATS_CPU,
                    attributes: vec![],
                },
            ),
            NLM_F_REQUEST | NLM_F_DUMP,
            1,
        );
        assert_eq!(cpu, hex(CPU_REQUEST));
        let global =
            crate::conntrack::encoded_stats_request(IPCTNL_MSG_CT_GET_STATS, NLM_F_REQUEST, 1);
        assert_eq!(global, hex(GLOBAL_REQUEST));
        // With NLM_F_ACK, as nfkit sends it, only the flags differ.
        let mut with_ack = hex(GLOBAL_REQUEST);
        with_ack[6] = 0x05;
        assert_eq!(
            crate::conntrack::encoded_stats_request(
                IPCTNL_MSG_CT_GET_STATS,
                NLM_F_REQUEST | NLM_F_ACK,
                1
            ),
            with_ack
        );
    }

    #[test]
    fn cpu_reply_decodes_and_round_trips() {
        let raw = hex(CPU_REPLY);
        let frames = split_frames(&raw).unwrap();
        assert_eq!(frames.len(), 1);
        let header = NetfilterHeader::parse(&frames[0].payload).unwrap();
        assert_eq!(header.res_id, 1, "res_id is the CPU id");
        let counters = decode_cpu_counters(&frames[0].payload[4..]).unwrap();
        let names: Vec<String> = counters.0.iter().map(|(c, _)| c.name()).collect();
        assert_eq!(
            names,
            [
                "found",
                "invalid",
                "insert",
                "insert_failed",
                "drop",
                "early_drop",
                "error",
                "search_restart",
                "clash_resolve",
                "chaintoolong"
            ]
        );
        assert_eq!(counters.get(CpuCounter::Insert), Some(1));
        assert_eq!(counters.get(CpuCounter::Drop), Some(1));
        assert_eq!(counters.get(CpuCounter::Found), Some(0));
        // Our encoder gives back the kernel's bytes, and so does the crate.
        assert_eq!(
            encode_frame(
                &raw,
                IPCTNL_MSG_CT_GET_STATS_CPU,
                1,
                encode_cpu_counters(&counters)
            ),
            raw
        );
        assert_eq!(reemit(&raw), raw);
        let done = hex(DONE);
        assert_eq!(reemit(&done), done);
    }

    #[test]
    fn global_reply_decodes_and_round_trips() {
        let raw = hex(GLOBAL_REPLY);
        let frames = split_frames(&raw).unwrap();
        let stats = decode_global(&frames[0].payload[4..]).unwrap();
        assert_eq!(stats.entries, 4);
        assert_eq!(stats.max_entries, Some(4));
        assert_eq!(
            encode_frame(&raw, IPCTNL_MSG_CT_GET_STATS, 0, encode_global(&stats)),
            raw
        );
        let ack = hex(ACK);
        assert_eq!(reemit(&ack), ack);
    }

    #[test]
    fn old_kernel_without_max_entries() {
        // Before 4.18 only CTA_STATS_GLOBAL_ENTRIES is sent.
        let stats = decode_global(&hex("08 00 01 00 00 00 00 07")).unwrap();
        assert_eq!(stats.entries, 7);
        assert_eq!(stats.max_entries, None);
        assert_eq!(decode_global(&[]), Err(DecodeError::MissingEntries));
    }

    #[test]
    fn unknown_counters_are_kept() {
        // A future counter 16 and a 64-bit value.
        let counters = decode_cpu_counters(&hex(
            "08 00 02 00 00 00 00 05 0c 00 10 00 00 00 00 01 00 00 00 00",
        ))
        .unwrap();
        assert_eq!(counters.get(CpuCounter::Found), Some(5));
        assert_eq!(counters.get(CpuCounter::Other(16)), Some(1 << 32));
        assert_eq!(CpuCounter::Other(16).name(), "attr_16");
        let json = serde_json::to_string(&counters).unwrap();
        assert_eq!(json, r#"{"found":5,"attr_16":4294967296}"#);
    }

    #[test]
    fn bad_lengths_are_errors() {
        assert!(matches!(
            decode_cpu_counters(&hex("06 00 02 00 00 05 00 00")),
            Err(DecodeError::BadValueLength {
                kind: 2,
                len: 2,
                ..
            })
        ));
        assert!(decode_cpu_counters(&hex("ff 00 02 00 00 00 00 05")).is_err());
    }

    #[test]
    fn expectation_reply_arrives_as_ctnetlink_type_3() {
        // Requested as 0x0203, answered as 0x0103 (reference §1.2).
        let raw = hex(EXP_REPLY);
        let message = NetlinkMessage::<NetfilterMessage>::deserialize(&raw).unwrap();
        let netlink_packet_core::NetlinkPayload::InnerMessage(inner) = &message.payload else {
            panic!("not an inner message");
        };
        assert!(matches!(
            &inner.inner,
            NetfilterMessageInner::Conntrack(ConntrackMessage::Other { message_type: IPCTNL_MSG_EXP_GET_STATS_CPU, attributes })
                if attributes.len() == 3
        ));
        assert_eq!(reemit(&raw), raw);
    }

    #[test]
    fn sums_keep_first_appearance_order() {
        let a = Counters(vec![(CpuCounter::Found, 1), (CpuCounter::Drop, 2)]);
        let b = Counters(vec![(CpuCounter::Drop, 3), (CpuCounter::Other(20), 4)]);
        let total = Counters::sum([&a, &b]);
        assert_eq!(
            total,
            Counters(vec![
                (CpuCounter::Found, 1),
                (CpuCounter::Drop, 5),
                (CpuCounter::Other(20), 4)
            ])
        );
    }
}
