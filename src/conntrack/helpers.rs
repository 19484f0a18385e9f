//! Conntrack helpers that do nothing (pure): a helper module (FTP, IRC,
//! SIP...) only inspects connections a helper is assigned to. Since Linux
//! 4.7 automatic assignment (`net.netfilter.nf_conntrack_helper`) is off by
//! default and 6.0 removed the switch: something must assign the helper —
//! an nftables `ct helper` object used by a rule, or a legacy
//! `-j CT --helper NAME` rule in the raw table (or its iptables-nft form).
//! The reader is [`super::helper_read`].

use serde::Serialize;

use crate::modules::name::ModuleName;

/// Helper modules and the helper names they register
/// (`nf_conntrack_helper_init` calls in net/netfilter/nf_conntrack_*.c).
const HELPERS: &[(&str, &[&str])] = &[
    ("ftp", &["ftp"]),
    ("irc", &["irc"]),
    ("sip", &["sip"]),
    ("tftp", &["tftp"]),
    ("amanda", &["amanda"]),
    ("h323", &["RAS", "Q.931", "H.245"]),
    ("pptp", &["pptp"]),
    ("sane", &["sane"]),
    ("snmp", &["snmp"]),
    ("netbios_ns", &["netbios-ns"]),
];

/// The helper names a module registers or depends on: `nf_conntrack_X`,
/// the legacy `ip_conntrack_X`, and the NAT halves `nf_nat_X` / `ip_nat_X`
/// (they act only on connections the conntrack helper is assigned to).
pub fn helper_names(module: &str) -> Option<&'static [&'static str]> {
    let canonical = ModuleName::canonical(module);
    let m = canonical.as_str();
    let rest = ["nf_conntrack_", "ip_conntrack_", "nf_nat_", "ip_nat_"]
        .iter()
        .find_map(|p| m.strip_prefix(p))?;
    HELPERS
        .iter()
        .find(|(suffix, _)| *suffix == rest)
        .map(|(_, names)| *names)
}

/// Automatic assignment (`net.netfilter.nf_conntrack_helper`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AutoAssign {
    /// The sysctl is 1: every helper is assigned by port (deprecated).
    On,
    /// The sysctl is 0.
    Off,
    /// No such sysctl (Linux ≥ 6.0, or nf_conntrack not there).
    Absent,
    /// Not read (offline).
    Unknown,
}

/// What assigns helpers on this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Assignments {
    /// nftables `ct helper` objects.
    pub nft_objects: Vec<NftHelperObject>,
    /// Legacy or iptables-nft `CT --helper` rules.
    pub ct_rules: Vec<CtRule>,
    /// `net.netfilter.nf_conntrack_helper`.
    pub auto_assign: AutoAssign,
    /// What could not be read (each makes "nothing assigns it" uncertain).
    pub unread: Vec<String>,
}

/// One nftables `ct helper` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NftHelperObject {
    /// Family (`inet`, `ip`...).
    pub family: String,
    /// Table.
    pub table: String,
    /// Object name.
    pub name: String,
    /// Helper it assigns (`ftp`).
    pub helper: String,
    /// References from rules or maps (`NFTA_OBJ_USE`).
    pub uses: u32,
}

/// One `CT --helper NAME` rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CtRule {
    /// Where: `iptables raw` (legacy x_tables) or `nft ip raw` (iptables-nft).
    pub source: String,
    /// The helper.
    pub helper: String,
}

/// The verdict for one helper module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HelperAssessment {
    /// The module.
    pub module: String,
    /// Helper names it registers.
    pub helpers: Vec<String>,
    /// What assigns one of them (evidence); empty: nothing.
    pub assigned_by: Vec<String>,
    /// `ct helper` objects of these helpers that no rule uses.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unused_objects: Vec<String>,
    /// Something assigns it.
    pub assigned: bool,
    /// Could not tell for sure (offline, or a source not readable).
    pub uncertain: bool,
    /// The warning, when nothing assigns it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    /// What would assign it.
    pub fix: String,
}

fn fix_for(helper: &str) -> String {
    let port = match helper {
        "ftp" => "tcp dport 21",
        "irc" => "tcp dport 6667",
        "sip" => "udp dport 5060",
        "tftp" => "udp dport 69",
        "amanda" => "udp dport 10080",
        "pptp" => "tcp dport 1723",
        "sane" => "tcp dport 6566",
        "snmp" => "udp dport 161",
        "netbios-ns" => "udp dport 137",
        _ => "tcp dport PORT",
    };
    let proto = port.split(' ').next().unwrap_or("tcp");
    format!(
        "assign it with a rule: nftables `table inet nat_helpers {{ ct helper {h} {{ type \"{helper}\" protocol {proto}; }} \
         chain pre {{ type filter hook prerouting priority filter; {port} ct helper set \"{h}\"; }} }}` \
         or iptables `-t raw -A PREROUTING -p {proto} --{p} -j CT --helper {helper}`",
        h = format!("{}-helper", helper.replace('.', "")),
        p = port.split(' ').skip(1).collect::<Vec<_>>().join(" "),
    )
}

/// Assesses one module; `None` when it is not a helper module.
pub fn assess(module: &str, a: &Assignments) -> Option<HelperAssessment> {
    let helpers = helper_names(module)?;
    let is_ours = |h: &str| helpers.iter().any(|x| x.eq_ignore_ascii_case(h));
    let mut assigned_by = Vec::new();
    let mut unused_objects = Vec::new();
    for o in a.nft_objects.iter().filter(|o| is_ours(&o.helper)) {
        let at = format!(
            "nft ct helper {} in table {} {} (helper {})",
            o.name, o.family, o.table, o.helper
        );
        if o.uses > 0 {
            assigned_by.push(format!("{at}, used by {} rule(s) or map(s)", o.uses));
        } else {
            unused_objects.push(at);
        }
    }
    for r in a.ct_rules.iter().filter(|r| is_ours(&r.helper)) {
        assigned_by.push(format!("{}: -j CT --helper {}", r.source, r.helper));
    }
    if a.auto_assign == AutoAssign::On {
        assigned_by.push(
            "net.netfilter.nf_conntrack_helper = 1 (automatic assignment by port; deprecated, removed in Linux 6.0)"
                .into(),
        );
    }
    let assigned = !assigned_by.is_empty();
    let uncertain = !assigned && (!a.unread.is_empty() || a.auto_assign == AutoAssign::Unknown);
    let auto = match a.auto_assign {
        AutoAssign::Off => "net.netfilter.nf_conntrack_helper = 0",
        AutoAssign::Absent => "net.netfilter.nf_conntrack_helper does not exist (Linux ≥ 6.0)",
        AutoAssign::Unknown => "net.netfilter.nf_conntrack_helper not read",
        AutoAssign::On => "",
    };
    let warning = (!assigned).then(|| {
        let mut w = format!(
            "{module} does nothing: no nftables ct helper object of helper {} is used by a rule, \
             no -j CT --helper rule in the raw table, {auto}",
            helpers.join("/")
        );
        if !unused_objects.is_empty() {
            w.push_str(&format!(
                " ({} exists but no rule uses it)",
                unused_objects.join("; ")
            ));
        }
        if !a.unread.is_empty() {
            w.push_str(&format!(" (not read: {})", a.unread.join("; ")));
        }
        w
    });
    Some(HelperAssessment {
        module: module.to_owned(),
        helpers: helpers.iter().map(|s| (*s).to_owned()).collect(),
        assigned_by,
        unused_objects,
        assigned,
        uncertain,
        warning,
        fix: fix_for(helpers[0]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none() -> Assignments {
        Assignments {
            nft_objects: vec![],
            ct_rules: vec![],
            auto_assign: AutoAssign::Absent,
            unread: vec![],
        }
    }

    #[test]
    fn helper_modules_are_known_by_every_name() {
        for m in [
            "nf_conntrack_ftp",
            "ip_conntrack_ftp",
            "ip_nat_ftp",
            "nf-conntrack-ftp",
        ] {
            assert_eq!(helper_names(m), Some(&["ftp"][..]), "{m}");
        }
        assert_eq!(
            helper_names("nf_conntrack_netbios_ns"),
            Some(&["netbios-ns"][..])
        );
        assert!(helper_names("nf_conntrack").is_none());
        assert!(helper_names("xt_state").is_none());
        assert!(assess("xt_state", &none()).is_none());
    }

    #[test]
    fn nothing_assigns_then_warns_with_fix() {
        let h = assess("nf_conntrack_ftp", &none()).unwrap();
        assert!(!h.assigned && !h.uncertain);
        let w = h.warning.unwrap();
        assert!(
            w.contains("does nothing") && w.contains("does not exist"),
            "{w}"
        );
        assert!(
            h.fix.contains("ct helper set") && h.fix.contains("--helper ftp"),
            "{}",
            h.fix
        );
    }

    #[test]
    fn each_source_assigns() {
        let mut a = none();
        a.nft_objects.push(NftHelperObject {
            family: "inet".into(),
            table: "t".into(),
            name: "ftp-standard".into(),
            helper: "ftp".into(),
            uses: 0,
        });
        let h = assess("nf_conntrack_ftp", &a).unwrap();
        assert!(!h.assigned, "an unused object assigns nothing");
        assert!(h.warning.unwrap().contains("no rule uses it"));
        a.nft_objects[0].uses = 1;
        assert!(assess("nf_conntrack_ftp", &a).unwrap().assigned);
        assert!(
            !assess("nf_conntrack_irc", &a).unwrap().assigned,
            "other helper"
        );
        let mut a = none();
        a.ct_rules.push(CtRule {
            source: "iptables raw".into(),
            helper: "ftp".into(),
        });
        assert!(assess("ip_conntrack_ftp", &a).unwrap().assigned);
        let mut a = none();
        a.auto_assign = AutoAssign::On;
        assert!(assess("nf_conntrack_sip", &a).unwrap().assigned);
        a.auto_assign = AutoAssign::Unknown;
        let h = assess("nf_conntrack_sip", &a).unwrap();
        assert!(!h.assigned && h.uncertain);
    }
}
