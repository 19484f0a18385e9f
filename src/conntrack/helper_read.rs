//! Reads what assigns conntrack helpers on the running kernel (for
//! [`super::helpers`]): nftables objects and rules, the legacy raw tables,
//! `net.netfilter.nf_conntrack_helper`. Offline nothing is read.

use super::helpers::{self, Assignments, AutoAssign, CtRule, HelperAssessment};
use crate::read::Kind;
use crate::system::Host;
use crate::tables::names::{Names, XtFamily, read_names};

/// Everything that assigns helpers here.
pub fn read_assignments(host: &Host) -> Assignments {
    let mut a = Assignments {
        nft_objects: Vec::new(),
        ct_rules: Vec::new(),
        auto_assign: AutoAssign::Unknown,
        unread: Vec::new(),
    };
    if host.offline {
        a.unread
            .push("offline (--root): the running kernel's rules are not read".into());
        return a;
    }
    a.auto_assign = match host.read(
        &host.proc("sys/net/netfilter/nf_conntrack_helper"),
        Kind::KernelValue,
    ) {
        Ok(Some(v)) if v.trim() == "1" => AutoAssign::On,
        Ok(Some(_)) => AutoAssign::Off,
        Ok(None) => AutoAssign::Absent,
        Err(e) => {
            a.unread.push(crate::error::message(&e));
            AutoAssign::Unknown
        }
    };
    for (family, tool) in [(XtFamily::Ipv4, "iptables"), (XtFamily::Ipv6, "ip6tables")] {
        match read_names(host, family) {
            Names::Listed { tables } if tables.iter().any(|t| t == "raw") => {
                match crate::tables::xtables::read_ct_helpers(family, "raw") {
                    Ok(helpers) => a.ct_rules.extend(helpers.into_iter().map(|helper| CtRule {
                        source: format!("{tool} -t raw (legacy x_tables)"),
                        helper,
                    })),
                    Err(e) => a.unread.push(crate::error::message(&e)),
                }
            }
            Names::Unreadable { error } => a.unread.push(error.message),
            _ => {}
        }
    }
    if host.component_present("nf_tables") {
        match crate::tables::nft_helpers::read() {
            Ok(found) => {
                a.nft_objects = found.objects;
                a.ct_rules.extend(
                    found
                        .ct_rules
                        .into_iter()
                        .map(|(source, helper)| CtRule { source, helper }),
                );
            }
            Err(e) => a.unread.push(crate::error::message(&e)),
        }
    }
    a
}

/// The helper modules `verify` looks at: the desired ones (`wanted`) and,
/// on the running kernel, those loaded as modules (built-in helpers are
/// there on every such kernel and are reported only when desired); each
/// with its assessment. Assignments are read only when there is one.
pub fn helper_modules(host: &Host, wanted: &[String]) -> Vec<HelperAssessment> {
    let mut modules: Vec<String> = wanted
        .iter()
        .filter(|m| helpers::helper_names(m).is_some())
        .cloned()
        .collect();
    if !host.offline {
        if let Ok(loaded) = crate::modules::sysfs::read_sys_modules(&host.sys_root) {
            for m in loaded {
                if m.initstate.is_some_and(|s| s.is_loaded())
                    && helpers::helper_names(&m.name).is_some()
                    && !modules.contains(&m.name)
                {
                    modules.push(m.name);
                }
            }
        }
    }
    if modules.is_empty() {
        return Vec::new();
    }
    let assignments = read_assignments(host);
    modules
        .iter()
        .filter_map(|m| helpers::assess(m, &assignments))
        .collect()
}
