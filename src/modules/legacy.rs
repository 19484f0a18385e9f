//! Old (2.6-era) netfilter module names and what they are today (pure).
//!
//! Facts per kernel (checked against Debian's 6.1 modules.alias with
//! `modprobe -R`): most 2.6 names survive as `MODULE_ALIAS()` of the xt_/nf_
//! module that replaced them, so they still load, but only when depmod has
//! indexed the aliases. Some modules were merged into others or removed;
//! those names no longer resolve at all.

use serde::Serialize;

/// What became of an old name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Fate {
    /// Still a kernel alias of `module`.
    Alias {
        /// The real module today.
        module: &'static str,
    },
    /// Merged into `module` in Linux `since`; nothing separate to load.
    Merged {
        /// Where the code lives now.
        module: &'static str,
        /// First kernel without the separate module.
        since: &'static str,
    },
    /// Removed in Linux `since`; `instead` does the job now.
    Removed {
        /// First kernel without it.
        since: &'static str,
        /// The modern replacement (module or mechanism).
        instead: &'static str,
    },
}

/// One entry of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LegacyName {
    /// The old name.
    pub name: &'static str,
    /// What became of it.
    #[serde(flatten)]
    pub fate: Fate,
}

const fn alias(name: &'static str, module: &'static str) -> LegacyName {
    LegacyName {
        name,
        fate: Fate::Alias { module },
    }
}
const fn merged(name: &'static str, module: &'static str, since: &'static str) -> LegacyName {
    LegacyName {
        name,
        fate: Fate::Merged { module, since },
    }
}
const fn removed(name: &'static str, since: &'static str, instead: &'static str) -> LegacyName {
    LegacyName {
        name,
        fate: Fate::Removed { since, instead },
    }
}

/// The table, sorted by name for reading; looked up linearly.
pub const TABLE: &[LegacyName] = &[
    alias("ip_conntrack", "nf_conntrack"),
    alias("ip_conntrack_amanda", "nf_conntrack_amanda"),
    alias("ip_conntrack_ftp", "nf_conntrack_ftp"),
    alias("ip_conntrack_h323", "nf_conntrack_h323"),
    merged("ip_conntrack_ipv4", "nf_conntrack", "4.19"),
    alias("ip_conntrack_irc", "nf_conntrack_irc"),
    alias("ip_conntrack_netbios_ns", "nf_conntrack_netbios_ns"),
    alias("ip_conntrack_pptp", "nf_conntrack_pptp"),
    alias("ip_conntrack_sip", "nf_conntrack_sip"),
    alias("ip_conntrack_tftp", "nf_conntrack_tftp"),
    merged("ip_nat", "nf_nat", "2.6.20"),
    alias("ip_nat_amanda", "nf_nat_amanda"),
    alias("ip_nat_ftp", "nf_nat_ftp"),
    alias("ip_nat_h323", "nf_nat_h323"),
    alias("ip_nat_irc", "nf_nat_irc"),
    alias("ip_nat_pptp", "nf_nat_pptp"),
    alias("ip_nat_sip", "nf_nat_sip"),
    alias("ip_nat_snmp_basic", "nf_nat_snmp_basic"),
    alias("ip_nat_tftp", "nf_nat_tftp"),
    removed("ip_queue", "3.5", "NFQUEUE (xt_NFQUEUE + nfnetlink_queue)"),
    alias("ipt_addrtype", "xt_addrtype"),
    alias("ipt_comment", "xt_comment"),
    alias("ipt_connmark", "xt_connmark"),
    alias("ipt_CONNMARK", "xt_connmark"),
    alias("ipt_conntrack", "xt_conntrack"),
    alias("ipt_DNAT", "xt_nat"),
    alias("ipt_dscp", "xt_dscp"),
    alias("ipt_DSCP", "xt_DSCP"),
    alias("ipt_ecn", "xt_ecn"),
    alias("ipt_hashlimit", "xt_hashlimit"),
    alias("ipt_helper", "xt_helper"),
    alias("ipt_iprange", "xt_iprange"),
    alias("ipt_length", "xt_length"),
    alias("ipt_limit", "xt_limit"),
    alias("ipt_LOG", "xt_LOG"),
    alias("ipt_mac", "xt_mac"),
    alias("ipt_mark", "xt_mark"),
    alias("ipt_MARK", "xt_mark"),
    alias("ipt_MASQUERADE", "xt_MASQUERADE"),
    alias("ipt_multiport", "xt_multiport"),
    alias("ipt_NETMAP", "xt_NETMAP"),
    alias("ipt_NFLOG", "xt_NFLOG"),
    alias("ipt_NFQUEUE", "xt_NFQUEUE"),
    alias("ipt_NOTRACK", "xt_CT"),
    alias("ipt_owner", "xt_owner"),
    alias("ipt_physdev", "xt_physdev"),
    alias("ipt_pkttype", "xt_pkttype"),
    alias("ipt_recent", "xt_recent"),
    alias("ipt_REDIRECT", "xt_REDIRECT"),
    alias("ipt_SNAT", "xt_nat"),
    alias("ipt_state", "xt_state"),
    alias("ipt_string", "xt_string"),
    alias("ipt_tcp", "xt_tcpudp"),
    alias("ipt_TCPMSS", "xt_TCPMSS"),
    alias("ipt_tcpmss", "xt_tcpmss"),
    alias("ipt_time", "xt_time"),
    alias("ipt_tos", "xt_dscp"),
    alias("ipt_TOS", "xt_DSCP"),
    alias("ipt_ttl", "xt_hl"),
    alias("ipt_TTL", "xt_HL"),
    alias("ipt_udp", "xt_tcpudp"),
    removed("ipt_ULOG", "3.17", "NFLOG (xt_NFLOG + nfnetlink_log)"),
    merged("nf_conntrack_ipv4", "nf_conntrack", "4.19"),
    merged("nf_conntrack_ipv6", "nf_conntrack", "4.19"),
    merged("nf_conntrack_proto_dccp", "nf_conntrack", "4.16"),
    merged("nf_conntrack_proto_gre", "nf_conntrack", "5.6"),
    merged("nf_conntrack_proto_sctp", "nf_conntrack", "4.16"),
    merged("nf_conntrack_proto_udplite", "nf_conntrack", "4.16"),
    alias("nf_log_ipv4", "nf_log_syslog"),
    alias("nf_log_ipv6", "nf_log_syslog"),
    merged("nf_nat_ipv4", "nf_nat", "5.1"),
    merged("nf_nat_ipv6", "nf_nat", "5.1"),
    merged("nf_nat_masquerade_ipv4", "nf_nat", "5.2"),
    merged("nf_nat_masquerade_ipv6", "nf_nat", "5.2"),
    merged("nf_nat_proto_gre", "nf_nat", "5.1"),
    removed("xt_NOTRACK", "4.18", "the CT target with --notrack (xt_CT)"),
];

/// The entry for `name` (dashes and underscores are equal), if any.
pub fn lookup(name: &str) -> Option<&'static LegacyName> {
    let n = super::name::normalize(name);
    TABLE.iter().find(|e| e.name == n)
}

impl LegacyName {
    /// A one-line note for the user. `resolved_to` is what libkmod resolved
    /// the name to on this kernel (empty when it found nothing).
    pub fn note(&self, resolved_to: &[String]) -> String {
        match self.fate {
            Fate::Alias { module } if resolved_to.iter().any(|m| m == module) => format!(
                "{} is a 2.6-era name kept as a kernel alias of {module}; \
                 use {module} in modprobe.d `options` and modules-load.d",
                self.name
            ),
            Fate::Alias { module } => format!(
                "{} is a 2.6-era name; current kernels call it {module} \
                 (the alias is missing here: kernel without it, or depmod not run)",
                self.name
            ),
            Fate::Merged { module, since } => format!(
                "{} was merged into {module} in Linux {since}: load {module} instead",
                self.name
            ),
            Fate::Removed { since, instead } => {
                format!("{} was removed in Linux {since}: use {instead}", self.name)
            }
        }
    }

    /// The module to suggest instead, if there is one.
    pub fn replacement(&self) -> Option<&'static str> {
        match self.fate {
            Fate::Alias { module } | Fate::Merged { module, .. } => Some(module),
            Fate::Removed { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_guide_names_are_known() {
        for n in [
            "ip_conntrack",
            "ip_conntrack_ftp",
            "ip_conntrack_irc",
            "ip_conntrack_netbios_ns",
            "ip_nat_ftp",
            "ip_nat_irc",
            "ipt_comment",
            "ipt_conntrack",
            "ipt_helper",
            "ipt_length",
            "ipt_limit",
            "ipt_LOG",
            "ipt_multiport",
            "ipt_REDIRECT",
            "ipt_state",
            "ipt_tcp",
            "ipt_TCPMSS",
            "ipt_tcpmss",
            "ipt_tos",
            "ipt_TOS",
            "ipt_ttl",
        ] {
            assert!(lookup(n).is_some(), "{n}");
        }
        // Real modules today, not legacy names.
        for n in [
            "ipt_REJECT",
            "iptable_filter",
            "xt_multiport",
            "nf_conntrack",
        ] {
            assert!(lookup(n).is_none(), "{n}");
        }
    }

    #[test]
    fn notes() {
        let e = lookup("ip_conntrack").unwrap();
        assert_eq!(e.replacement(), Some("nf_conntrack"));
        assert!(
            e.note(&["nf_conntrack".into()])
                .contains("kernel alias of nf_conntrack")
        );
        assert!(e.note(&[]).contains("alias is missing"));
        let e = lookup("ipt_ULOG").unwrap();
        assert_eq!(e.replacement(), None);
        assert!(e.note(&[]).contains("removed in Linux 3.17"));
        assert!(
            lookup("nf-conntrack-ipv4")
                .unwrap()
                .note(&[])
                .contains("merged into nf_conntrack")
        );
    }

    #[test]
    fn table_has_no_duplicates() {
        let mut names: Vec<_> = TABLE.iter().map(|e| e.name).collect();
        names.sort_unstable();
        let n = names.len();
        names.dedup();
        assert_eq!(n, names.len());
    }
}
