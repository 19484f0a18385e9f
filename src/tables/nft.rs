//! nftables tables and chains over netlink (`NFNL_SUBSYS_NFTABLES`).
//!
//! Requests: `NFT_MSG_GETTABLE`, `NFT_MSG_GETCHAIN`, `NFT_MSG_GETRULE`
//! dumps (reading has no side effects and loads nothing). Table replies are
//! decoded with `netlink-packet-netfilter`'s typed messages; chain and rule
//! replies are read attribute by attribute here, because nfkit needs only a
//! few attributes (a hook's meaning depends on the family, and rule
//! expressions are irrelevant for counting rules).

use netlink_packet_core::NlaBuffer;
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
    nftables::{ChainMessage, NfTablesMessage, RuleMessage, TableAttribute, TableMessage},
};
use serde::Serialize;

use crate::netlink::{self, NfnlSocket, Reply};

const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
/// Attribute type mask (drops NLA_F_NESTED / NLA_F_NET_BYTEORDER).
const NLA_TYPE_MASK: u16 = 0x3fff;

/// An nftables family, as nft names it.
pub fn family_name(family: u8) -> String {
    match family {
        1 => "inet".into(),
        2 => "ip".into(),
        3 => "arp".into(),
        5 => "netdev".into(),
        7 => "bridge".into(),
        10 => "ip6".into(),
        other => format!("family-{other}"),
    }
}

/// Parses a family name (`inet`, `ip`, `ip6`, `arp`, `bridge`, `netdev`).
pub fn family_number(name: &str) -> Option<u8> {
    Some(match name {
        "inet" => 1,
        "ip" => 2,
        "arp" => 3,
        "netdev" => 5,
        "bridge" => 7,
        "ip6" => 10,
        _ => return None,
    })
}

fn hook_name(family: u8, hook: u32) -> String {
    let name = match (family, hook) {
        (3, 0) => "input",
        (3, 1) => "output",
        (3, 2) => "forward",
        (5, 0) => "ingress",
        (5, 1) => "egress",
        (_, 0) => "prerouting",
        (_, 1) => "input",
        (_, 2) => "forward",
        (_, 3) => "output",
        (_, 4) => "postrouting",
        (_, 5) => "ingress",
        _ => return format!("hook-{hook}"),
    };
    name.to_string()
}

/// One nftables table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NftTable {
    /// Family name (`inet`, `ip`, ...).
    pub family: String,
    /// Table name.
    pub name: String,
    /// Number of chains (`NFTA_TABLE_USE`).
    pub chains: u32,
    /// Flag names (`dormant`, `owner`, `persist`) and unknown bits as hex.
    pub flags: Vec<String>,
    /// Table handle.
    pub handle: Option<u64>,
}

/// One nftables chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NftChain {
    /// Chain name.
    pub name: String,
    /// Hook of a base chain.
    pub hook: Option<String>,
    /// Priority of a base chain.
    pub priority: Option<i32>,
    /// Chain type of a base chain (`filter`, `nat`, `route`).
    pub chain_type: Option<String>,
    /// Policy of a base chain.
    pub policy: Option<String>,
    /// Number of rules.
    pub rules: usize,
}

fn flag_names(bits: u32) -> Vec<String> {
    let mut names = Vec::new();
    for (bit, name) in [(1, "dormant"), (2, "owner"), (4, "persist")] {
        if bits & bit != 0 {
            names.push(name.to_string());
        }
    }
    let unknown = bits & !7;
    if unknown != 0 {
        names.push(format!("{unknown:#x}"));
    }
    names
}

/// Decodes one `NFT_MSG_NEWTABLE` dump message.
pub fn table_from_message(message: &NetfilterMessage) -> Option<NftTable> {
    let NetfilterMessageInner::NfTables(NfTablesMessage::NewTable(table)) = &message.inner else {
        return None;
    };
    let mut out = NftTable {
        family: family_name(message.header.family.into()),
        name: String::new(),
        chains: 0,
        flags: Vec::new(),
        handle: None,
    };
    for attribute in &table.attributes {
        match attribute {
            TableAttribute::Name(name) => out.name = name.clone(),
            TableAttribute::Use(n) => out.chains = *n,
            TableAttribute::Flags(flags) => out.flags = flag_names(flags.bits()),
            TableAttribute::Handle(h) => out.handle = Some(*h),
            _ => {}
        }
    }
    Some(out)
}

pub(crate) fn nft_request(family: u8, inner: NfTablesMessage) -> NetfilterMessage {
    NetfilterMessage::new(
        NetfilterHeader::new(NetfilterProtoFamily::from(family), 0, 0),
        inner,
    )
}

/// The `NFT_MSG_GETTABLE` dump request for all families.
pub fn get_tables_request() -> NetfilterMessage {
    nft_request(
        0,
        NfTablesMessage::GetTable(TableMessage { attributes: vec![] }),
    )
}

pub(crate) fn string_value(value: &[u8]) -> String {
    let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
    String::from_utf8_lossy(&value[..end]).into_owned()
}

pub(crate) fn be_u32(value: &[u8]) -> Option<u32> {
    value
        .get(..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// The attributes after the 4-byte nfgenmsg, as `(type, value)`; parsing
/// stops at the first malformed attribute.
pub(crate) fn attributes(payload: &[u8]) -> Vec<(u16, &[u8])> {
    nested(payload.get(4..).unwrap_or(&[]))
}

/// Attributes of a buffer as `(type, value)` pairs.
pub(crate) fn nested(buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut rest = buf;
    while rest.len() >= 4 {
        let Ok(nla) = NlaBuffer::new_checked(rest) else {
            break;
        };
        let len = usize::from(nla.length());
        if len < 4 {
            break;
        }
        out.push((nla.kind() & NLA_TYPE_MASK, &rest[4..len]));
        rest = rest.get(len.div_ceil(4) * 4..).unwrap_or(&[]);
    }
    out
}

/// Decodes one `NFT_MSG_NEWCHAIN` reply: `(table, chain)`.
pub fn chain_from_reply(family: u8, payload: &[u8]) -> Option<(String, NftChain)> {
    let mut table = None;
    let mut chain = NftChain {
        name: String::new(),
        hook: None,
        priority: None,
        chain_type: None,
        policy: None,
        rules: 0,
    };
    for (kind, value) in attributes(payload) {
        match kind {
            NFTA_CHAIN_TABLE => table = Some(string_value(value)),
            NFTA_CHAIN_NAME => chain.name = string_value(value),
            NFTA_CHAIN_TYPE => chain.chain_type = Some(string_value(value)),
            NFTA_CHAIN_POLICY => {
                chain.policy = be_u32(value).map(|p| match p {
                    0 => "drop".to_string(),
                    1 => "accept".to_string(),
                    other => format!("verdict {other}"),
                })
            }
            NFTA_CHAIN_HOOK => {
                for (inner_kind, inner) in nested(value) {
                    match inner_kind {
                        NFTA_HOOK_HOOKNUM => {
                            chain.hook = be_u32(inner).map(|h| hook_name(family, h))
                        }
                        NFTA_HOOK_PRIORITY => chain.priority = be_u32(inner).map(|p| p as i32),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some((table?, chain))
}

/// Decodes one `NFT_MSG_NEWRULE` reply: `(table, chain)` it belongs to.
pub fn rule_location(payload: &[u8]) -> Option<(String, String)> {
    let mut table = None;
    let mut chain = None;
    for (kind, value) in attributes(payload) {
        match kind {
            NFTA_RULE_TABLE => table = Some(string_value(value)),
            NFTA_RULE_CHAIN => chain = Some(string_value(value)),
            _ => {}
        }
    }
    Some((table?, chain?))
}

/// Lists all nftables tables (all families).
pub fn list_tables(socket: &mut NfnlSocket) -> Result<Vec<NftTable>, netlink::Error> {
    const OP: &str = "list nftables tables (NFT_MSG_GETTABLE)";
    let replies = socket.dump(OP, get_tables_request())?;
    let mut tables = Vec::new();
    for reply in &replies {
        if let Some(table) = table_from_reply(OP, reply)? {
            tables.push(table);
        }
    }
    Ok(tables)
}

/// `NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWTABLE`.
const NEWTABLE_TYPE: u16 = 10 << 8;

/// Decodes one reply of the table dump. Only `NFT_MSG_NEWTABLE` frames are
/// handed to netlink-packet-netfilter: its parsers of other nftables
/// messages (sets, for one) index attributes without checking their length
/// and panic on a malformed one (found by fuzzing), and nfkit needs no other
/// message here.
pub fn table_from_reply(
    op: &'static str,
    reply: &Reply,
) -> Result<Option<NftTable>, netlink::Error> {
    if reply.header.message_type != NEWTABLE_TYPE {
        return Ok(None);
    }
    Ok(table_from_message(&netlink::decode(op, reply)?))
}

pub(crate) fn family_of(reply: &Reply) -> u8 {
    reply.payload.first().copied().unwrap_or(0)
}

/// Lists the chains of one table with their rule counts.
pub fn list_chains(
    socket: &mut NfnlSocket,
    family: u8,
    table: &str,
) -> Result<Vec<NftChain>, netlink::Error> {
    const OP_CHAINS: &str = "list nftables chains (NFT_MSG_GETCHAIN)";
    const OP_RULES: &str = "list nftables rules (NFT_MSG_GETRULE)";
    let chain_replies = socket.dump(
        OP_CHAINS,
        nft_request(
            family,
            NfTablesMessage::GetChain(ChainMessage { attributes: vec![] }),
        ),
    )?;
    let mut chains: Vec<NftChain> = chain_replies
        .iter()
        .filter(|r| family_of(r) == family)
        .filter_map(|r| chain_from_reply(family, &r.payload))
        .filter(|(t, _)| t == table)
        .map(|(_, c)| c)
        .collect();
    let rule_replies = socket.dump(
        OP_RULES,
        nft_request(
            family,
            NfTablesMessage::GetRule(RuleMessage { attributes: vec![] }),
        ),
    )?;
    for reply in rule_replies.iter().filter(|r| family_of(r) == family) {
        if let Some((t, c)) = rule_location(&reply.payload)
            && t == table
            && let Some(chain) = chains.iter_mut().find(|ch| ch.name == c)
        {
            chain.rules += 1;
        }
    }
    Ok(chains)
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::{NLM_F_DUMP, NLM_F_REQUEST};

    /// `NFT_MSG_GETTABLE` dump request, family 0, seq 1 (reference §4.3).
    const GETTABLE_REQUEST: [u8; 20] = [
        0x14, 0, 0, 0, 0x01, 0x0a, 0x01, 0x03, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];

    /// Reply: table inet "t1", 1 chain, handle 1, flags 0 (reference §4.3).
    const TABLE_REPLY: [u8; 56] = [
        0x38, 0, 0, 0, 0x00, 0x0a, 0x02, 0x00, 0x01, 0, 0, 0, 0x47, 0x3d, 0, 0, //
        0x01, 0x00, 0x00, 0x03, // nfgenmsg: inet, v0, res_id = generation 3
        0x07, 0x00, 0x01, 0x00, 0x74, 0x31, 0x00, 0x00, // NAME "t1"
        0x08, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01, // USE 1
        0x0c, 0x00, 0x04, 0x00, 0, 0, 0, 0, 0, 0, 0, 0x01, // HANDLE 1
        0x08, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, // FLAGS 0
    ];

    #[test]
    fn gettable_request_bytes() {
        let bytes = netlink::encode_request(get_tables_request(), NLM_F_REQUEST | NLM_F_DUMP, 1);
        assert_eq!(bytes, GETTABLE_REQUEST);
    }

    #[test]
    fn table_reply_decodes_and_re_encodes() {
        use netlink_packet_core::NetlinkMessage;
        let frames = netlink::split_frames(&TABLE_REPLY).unwrap();
        assert_eq!(frames.len(), 1);
        let message = netlink::decode("test", &frames[0]).unwrap();
        let table = table_from_message(&message).unwrap();
        assert_eq!(
            table,
            NftTable {
                family: "inet".into(),
                name: "t1".into(),
                chains: 1,
                flags: vec![],
                handle: Some(1)
            }
        );
        // Re-emit the whole frame and compare byte for byte.
        let full = NetlinkMessage::<NetfilterMessage>::deserialize(&TABLE_REPLY).unwrap();
        let mut out = vec![0u8; full.buffer_len()];
        full.serialize(&mut out);
        assert_eq!(out, TABLE_REPLY);
    }

    #[test]
    fn chain_reply_with_hook_policy_and_type() {
        // nfgenmsg ip | TABLE "nat" | NAME "POSTROUTING" | HOOK{num 4, prio 100}
        // | POLICY accept | TYPE "nat"
        let mut p = vec![2, 0, 0, 0];
        p.extend([8, 0, 1, 0, b'n', b'a', b't', 0]);
        p.extend([16, 0, 3, 0]);
        p.extend(b"POSTROUTING\0");
        p.extend([
            20, 0, 4, 0x80, 8, 0, 1, 0, 0, 0, 0, 4, 8, 0, 2, 0, 0, 0, 0, 100,
        ]);
        p.extend([8, 0, 5, 0, 0, 0, 0, 1]);
        p.extend([8, 0, 7, 0, b'n', b'a', b't', 0]);
        let (table, chain) = chain_from_reply(2, &p).unwrap();
        assert_eq!(table, "nat");
        assert_eq!(chain.name, "POSTROUTING");
        assert_eq!(chain.hook.as_deref(), Some("postrouting"));
        assert_eq!(chain.priority, Some(100));
        assert_eq!(chain.policy.as_deref(), Some("accept"));
        assert_eq!(chain.chain_type.as_deref(), Some("nat"));
    }

    #[test]
    fn rule_location_needs_table_and_chain() {
        let mut p = vec![1, 0, 0, 0];
        p.extend([8, 0, 1, 0, b't', b'1', 0, 0]);
        p.extend([8, 0, 2, 0, b'c', b'1', 0, 0]);
        assert_eq!(rule_location(&p), Some(("t1".into(), "c1".into())));
        assert_eq!(rule_location(&p[..12]), None);
    }

    #[test]
    fn families_and_flags() {
        for name in ["inet", "ip", "ip6", "arp", "bridge", "netdev"] {
            assert_eq!(family_name(family_number(name).unwrap()), name);
        }
        assert_eq!(family_number("ipv4"), None);
        assert_eq!(flag_names(5), vec!["dormant", "persist"]);
        assert_eq!(flag_names(0x10), vec!["0x10"]);
        assert_eq!(hook_name(3, 1), "output");
        assert_eq!(hook_name(5, 0), "ingress");
    }

    /// Found by the nft fuzz target: netlink-packet-netfilter 0.4 panics
    /// (slice index out of range in `NlaBuffer::value`) on this malformed
    /// message of another nftables type; the table dump now hands only
    /// `NFT_MSG_NEWTABLE` frames to it.
    #[test]
    fn other_nftables_messages_are_not_decoded() {
        let mut header = netlink_packet_core::NetlinkHeader::default();
        header.message_type = (10 << 8) | 11;
        let reply = Reply {
            header,
            payload: vec![
                2, 0, 64, 0, 8, 0, 17, 0, 0, 39, 2, 4, 0, 0, 61, 4, 9, 0, 110, 0, 8, 97, 116, 0, 1,
                96, 0, 64,
            ],
        };
        assert_eq!(table_from_reply("test", &reply).unwrap(), None);
        let frames = netlink::split_frames(&TABLE_REPLY).unwrap();
        assert_eq!(
            table_from_reply("test", &frames[0])
                .unwrap()
                .map(|t| t.name),
            Some("t1".to_string())
        );
    }
}
