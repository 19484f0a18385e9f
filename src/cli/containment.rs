//! The container / restricted-host lines of `status` (issue 14 §6).

use std::fmt::Write as _;

use crate::containment::{Containment, OpenVzRole, Where};

/// Writes nothing on a plain host; otherwise the container, OpenVZ role and
/// restrictions, and every operation that is not possible here.
pub fn render(out: &mut String, c: &Containment) {
    if let Some(name) = &c.container {
        let _ = writeln!(out, "container    {name}");
    }
    if let Some(vz) = &c.openvz {
        let role = match vz.role {
            OpenVzRole::Container => "OpenVZ/Virtuozzo container",
            OpenVzRole::HostNode => "OpenVZ/Virtuozzo hardware node",
        };
        let _ = writeln!(out, "openvz       {role} ({})", vz.evidence.join(", "));
        for r in &vz.restrictions {
            let _ = writeln!(out, "             {r}");
        }
    }
    for cap in &c.capabilities {
        let label = match cap.outcome {
            Where::Here => continue,
            Where::MustBeDoneOnHost => "on the host",
            Where::Unavailable => "unavailable",
        };
        let _ = writeln!(
            out,
            "{label:<12} {}: {}",
            cap.operation,
            cap.why.as_deref().unwrap_or("")
        );
    }
}
