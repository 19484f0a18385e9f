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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// One netlink attribute (host-endian header, 4-byte padded).
    fn nla(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
        b.extend_from_slice(&kind.to_ne_bytes());
        b.extend_from_slice(value);
        while b.len() % 4 != 0 {
            b.push(0);
        }
        b
    }

    fn object(kind: u32, helper: &str, uses: u32) -> Vec<u8> {
        let mut p = vec![1, 0, 0, 0]; // nfgenmsg: inet
        p.extend(nla(NFTA_OBJ_TABLE, b"t\0"));
        p.extend(nla(NFTA_OBJ_NAME, b"ftp-std\0"));
        p.extend(nla(NFTA_OBJ_TYPE, &kind.to_be_bytes()));
        p.extend(nla(
            NFTA_OBJ_DATA | 0x8000,
            &nla(NFTA_CT_HELPER_NAME, format!("{helper}\0").as_bytes()),
        ));
        p.extend(nla(NFTA_OBJ_USE, &uses.to_be_bytes()));
        p
    }

    #[test]
    fn ct_helper_objects_decode_and_others_are_skipped() {
        let o = helper_object(&object(OBJECT_CT_HELPER, "ftp", 2)).unwrap();
        assert_eq!(
            (
                o.family.as_str(),
                o.table.as_str(),
                o.name.as_str(),
                o.helper.as_str(),
                o.uses
            ),
            ("inet", "t", "ftp-std", "ftp", 2)
        );
        assert!(
            helper_object(&object(1, "ftp", 2)).is_none(),
            "a counter object"
        );
    }

    #[test]
    fn iptables_nft_ct_target_decodes() {
        let mut info = vec![0u8; 12];
        info.extend_from_slice(b"ftp\0\0\0\0\0\0\0\0\0\0\0\0\0");
        info.extend_from_slice(&[0u8; 40]);
        let data = [
            nla(NFTA_TARGET_NAME, b"CT\0"),
            nla(2, &1u32.to_be_bytes()),
            nla(NFTA_TARGET_INFO, &info),
        ]
        .concat();
        let expr = [nla(NFTA_EXPR_NAME, b"target\0"), nla(NFTA_EXPR_DATA, &data)].concat();
        let mut p = vec![2, 0, 0, 0];
        p.extend(nla(NFTA_RULE_TABLE, b"raw\0"));
        p.extend(nla(NFTA_RULE_CHAIN, b"PREROUTING\0"));
        p.extend(nla(NFTA_RULE_EXPRESSIONS, &nla(NFTA_LIST_ELEM, &expr)));
        let (table, chain, helpers) = rule_ct_helpers(&p);
        assert_eq!((table.as_str(), chain.as_str()), ("raw", "PREROUTING"));
        assert_eq!(helpers, ["ftp"]);
    }

    proptest! {
        /// Kernel bytes never make the decoders panic.
        #[test]
        fn decoders_take_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = helper_object(&bytes);
            let _ = rule_ct_helpers(&bytes);
            let _ = crate::tables::xtables::ct_helpers(crate::tables::names::XtFamily::Ipv4, &bytes);
        }
    }
}
