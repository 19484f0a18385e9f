//! `/proc/net/{ip,ip6,arp}_tables_names` (legacy xtables table names).
//!
//! Each file lists, one per line, the tables instantiated **in the reader's
//! network namespace**. Tables are created lazily on first use, and merely
//! asking the kernel about a table with `IPT_SO_GET_INFO` creates it; so the
//! names file is always read first and only names listed there are queried.

use std::io;

use serde::Serialize;

use crate::system::Host;

/// A legacy (xtables) family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum XtFamily {
    /// iptables (`/proc/net/ip_tables_names`).
    Ipv4,
    /// ip6tables (`/proc/net/ip6_tables_names`).
    Ipv6,
    /// arptables (`/proc/net/arp_tables_names`).
    Arp,
}

impl XtFamily {
    /// All families with a names file.
    pub const ALL: [XtFamily; 3] = [XtFamily::Ipv4, XtFamily::Ipv6, XtFamily::Arp];

    /// The names file below `/proc`.
    pub fn names_file(self) -> &'static str {
        match self {
            XtFamily::Ipv4 => "net/ip_tables_names",
            XtFamily::Ipv6 => "net/ip6_tables_names",
            XtFamily::Arp => "net/arp_tables_names",
        }
    }

    /// Lower-case name used in output and `--family`.
    pub fn name(self) -> &'static str {
        match self {
            XtFamily::Ipv4 => "ipv4",
            XtFamily::Ipv6 => "ipv6",
            XtFamily::Arp => "arp",
        }
    }
}

/// Table names of one family, or why they are unknown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Names {
    /// The file exists; these tables are instantiated.
    Listed { tables: Vec<String> },
    /// No names file: this family's legacy tables are not in the kernel.
    Unavailable,
    /// The file exists but could not be read.
    Unreadable { error: crate::error::ErrorObject },
}

/// Parses a names file's text: one name per line, blank lines ignored.
pub fn parse_names(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// Reads one family's names file.
pub fn read_names(host: &Host, family: XtFamily) -> Names {
    let path = host.proc(family.names_file());
    match host.read_io(&path, crate::read::Kind::KernelValue) {
        Ok(text) => Names::Listed {
            tables: parse_names(&text),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Names::Unavailable,
        Err(e) => Names::Unreadable {
            error: crate::error::ErrorObject::context(
                format!("cannot read {}", path.display()),
                &e,
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn parses_names_and_ignores_blank_lines() {
        assert_eq!(parse_names("nat\nmangle\n\n"), vec!["nat", "mangle"]);
        assert!(parse_names("").is_empty());
    }

    #[test]
    fn fake_tree_listed_missing_and_unreadable() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("proc/net")).unwrap();
        fs::write(dir.path().join("proc/net/ip_tables_names"), "filter\nnat\n").unwrap();
        // A directory where the file should be: reading fails (EISDIR).
        fs::create_dir_all(dir.path().join("proc/net/arp_tables_names")).unwrap();
        let host = Host::offline(dir.path());
        assert_eq!(
            read_names(&host, XtFamily::Ipv4),
            Names::Listed {
                tables: vec!["filter".into(), "nat".into()]
            }
        );
        assert_eq!(read_names(&host, XtFamily::Ipv6), Names::Unavailable);
        assert!(matches!(
            read_names(&host, XtFamily::Arp),
            Names::Unreadable { .. }
        ));
    }
}
