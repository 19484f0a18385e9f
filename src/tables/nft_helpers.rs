//! nftables conntrack helper assignment: `ct helper` objects
//! (`NFT_MSG_GETOBJ` dump) and iptables-nft's `CT --helper` rules (the
//! `target` expression with x_tables' `xt_ct_target_info`, in the
//! `NFT_MSG_GETRULE` dump). Decoders are pure; [`read`] does the dumps.

use netlink_packet_netfilter::nftables::{NfTablesMessage, RuleMessage};

use super::nft::{attributes, be_u32, family_name, family_of, nested, nft_request, string_value};
use crate::conntrack::helpers::NftHelperObject;
use crate::netlink::{self, NfnlSocket};

/// `NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWOBJ`.
const NEWOBJ_TYPE: u16 = 10 << 8 | 18;
/// `NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWRULE`.
const NEWRULE_TYPE: u16 = 10 << 8 | 6;
const NFTA_OBJ_TABLE: u16 = 1;
const NFTA_OBJ_NAME: u16 = 2;
const NFTA_OBJ_TYPE: u16 = 3;
const NFTA_OBJ_DATA: u16 = 4;
const NFTA_OBJ_USE: u16 = 5;
/// `NFT_OBJECT_CT_HELPER`.
const OBJECT_CT_HELPER: u32 = 3;
const NFTA_CT_HELPER_NAME: u16 = 1;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_TARGET_NAME: u16 = 1;
const NFTA_TARGET_INFO: u16 = 3;

/// Decodes one `NFT_MSG_NEWOBJ` payload; `None` unless a `ct helper`.
pub fn helper_object(payload: &[u8]) -> Option<NftHelperObject> {
    let family = payload.first().copied()?;
    let mut o = NftHelperObject {
        family: family_name(family),
        table: String::new(),
        name: String::new(),
        helper: String::new(),
        uses: 0,
    };
    let mut kind = None;
    for (k, v) in attributes(payload) {
        match k {
            NFTA_OBJ_TABLE => o.table = string_value(v),
            NFTA_OBJ_NAME => o.name = string_value(v),
            NFTA_OBJ_TYPE => kind = be_u32(v),
            NFTA_OBJ_USE => o.uses = be_u32(v).unwrap_or(0),
            NFTA_OBJ_DATA => {
                for (ik, iv) in nested(v) {
                    if ik == NFTA_CT_HELPER_NAME {
                        o.helper = string_value(iv);
                    }
                }
            }
            _ => {}
        }
    }
    (kind == Some(OBJECT_CT_HELPER)).then_some(o)
}

/// Decodes one `NFT_MSG_NEWRULE` payload: `(table, chain, helpers)` of its
/// `target CT` expressions (iptables-nft's `-j CT --helper NAME`).
pub fn rule_ct_helpers(payload: &[u8]) -> (String, String, Vec<String>) {
    let (mut table, mut chain, mut helpers) = (String::new(), String::new(), Vec::new());
    for (k, v) in attributes(payload) {
        match k {
            NFTA_RULE_TABLE => table = string_value(v),
            NFTA_RULE_CHAIN => chain = string_value(v),
            NFTA_RULE_EXPRESSIONS => {
                for (ek, elem) in nested(v) {
                    if ek != NFTA_LIST_ELEM {
                        continue;
                    }
                    let attrs = nested(elem);
                    let is_target = attrs
                        .iter()
                        .any(|(k, v)| *k == NFTA_EXPR_NAME && string_value(v) == "target");
                    if !is_target {
                        continue;
                    }
                    for (_, data) in attrs.iter().filter(|(k, _)| *k == NFTA_EXPR_DATA) {
                        let inner = nested(data);
                        let ct = inner
                            .iter()
                            .any(|(k, v)| *k == NFTA_TARGET_NAME && string_value(v) == "CT");
                        let info = inner.iter().find(|(k, _)| *k == NFTA_TARGET_INFO);
                        if let (true, Some((_, info))) = (ct, info) {
                            let at = super::xtables::CT_HELPER_AT;
                            if let Some(h) = info.get(at..at + 16).map(string_value) {
                                if !h.is_empty() {
                                    helpers.push(h);
                                }
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    (table, chain, helpers)
}

/// What the two dumps found.
pub struct Found {
    /// `ct helper` objects.
    pub objects: Vec<NftHelperObject>,
    /// `(where, helper)` of iptables-nft `CT --helper` rules.
    pub ct_rules: Vec<(String, String)>,
}

/// Dumps the objects and rules of every family.
pub fn read() -> Result<Found, netlink::Error> {
    const OP_OBJ: &str = "list nftables objects (NFT_MSG_GETOBJ)";
    const OP_RULE: &str = "list nftables rules (NFT_MSG_GETRULE)";
    let mut socket = NfnlSocket::open(OP_OBJ)?;
    let objects = socket
        .dump(OP_OBJ, nft_request(0, NfTablesMessage::GetObject(vec![])))?
        .iter()
        .filter(|r| r.header.message_type == NEWOBJ_TYPE)
        .filter_map(|r| helper_object(&r.payload))
        .collect();
    let mut ct_rules = Vec::new();
    let rules = socket.dump(
        OP_RULE,
        nft_request(
            0,
            NfTablesMessage::GetRule(RuleMessage { attributes: vec![] }),
        ),
    )?;
    for r in rules
        .iter()
        .filter(|r| r.header.message_type == NEWRULE_TYPE)
    {
        let (table, chain, helpers) = rule_ct_helpers(&r.payload);
        for h in helpers {
            ct_rules.push((
                format!(
                    "nft {} {table} {chain} (iptables-nft)",
                    family_name(family_of(r))
                ),
                h,
            ));
        }
    }
    Ok(Found { objects, ct_rules })
}
