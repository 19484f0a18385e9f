//! Parser for `/proc/net/stat/nf_conntrack` (pure).
//!
//! The file exists only with `CONFIG_NF_CONNTRACK_PROCFS` (default off on
//! recent kernels). Layout: a header line of column names, then one line per
//! possible CPU of hexadecimal values. Columns are matched by **name**, not
//! position, because the set changed over releases (5.10 renamed and
//! re-ordered columns; prometheus/procfs reads by position and mislabels
//! them). The `entries` column is the namespace-wide count, repeated on
//! every row.

use super::stats::{Counters, CpuCounter};

/// What the proc file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStats {
    /// The `entries` column (namespace-wide), when present.
    pub entries: Option<u64>,
    /// One set of counters per row, in row order (row index = n-th possible
    /// CPU).
    pub per_cpu: Vec<Counters>,
    /// Expectation counters (`expect_new`, `expect_create`, `expect_delete`)
    /// summed over CPUs.
    pub expect: Vec<(String, u64)>,
}

/// Maps a proc column name to a per-CPU counter. Column names differ from
/// the netlink names for three counters (`clashres`, `chainlength`,
/// `icmp_error`). Returns `None` for non-counter columns.
fn column_counter(name: &str) -> Option<CpuCounter> {
    Some(match name {
        "searched" => CpuCounter::Searched,
        "found" => CpuCounter::Found,
        "new" => CpuCounter::New,
        "invalid" => CpuCounter::Invalid,
        "ignore" => CpuCounter::Ignore,
        "delete" => CpuCounter::Delete,
        "delete_list" => CpuCounter::DeleteList,
        "insert" => CpuCounter::Insert,
        "insert_failed" => CpuCounter::InsertFailed,
        "drop" => CpuCounter::Drop,
        "early_drop" => CpuCounter::EarlyDrop,
        "icmp_error" | "error" => CpuCounter::Error,
        "search_restart" => CpuCounter::SearchRestart,
        "clashres" | "clash_resolve" => CpuCounter::ClashResolve,
        "chainlength" | "chaintoolong" => CpuCounter::ChainTooLong,
        _ => return None,
    })
}

/// Parse error with the line number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("/proc/net/stat/nf_conntrack line {line}: {reason}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

/// Parses the file's text.
pub fn parse(text: &str) -> Result<ProcStats, ParseError> {
    let mut lines = text.lines().enumerate();
    let header: Vec<&str> = match lines.next() {
        Some((_, h)) => h.split_whitespace().collect(),
        None => {
            return Err(ParseError {
                line: 1,
                reason: "empty file".into(),
            });
        }
    };
    if !header.contains(&"entries") && !header.iter().any(|c| column_counter(c).is_some()) {
        return Err(ParseError {
            line: 1,
            reason: "no known column in the header".into(),
        });
    }
    let mut stats = ProcStats {
        entries: None,
        per_cpu: Vec::new(),
        expect: Vec::new(),
    };
    for (index, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let values: Vec<&str> = line.split_whitespace().collect();
        if values.len() != header.len() {
            return Err(ParseError {
                line: index + 1,
                reason: format!("{} values for {} columns", values.len(), header.len()),
            });
        }
        let mut counters = Counters::default();
        for (name, raw) in header.iter().zip(&values) {
            let value = u64::from_str_radix(raw, 16).map_err(|_| ParseError {
                line: index + 1,
                reason: format!("column {name}: {raw:?} is not hexadecimal"),
            })?;
            if *name == "entries" {
                stats.entries = Some(value);
            } else if let Some(counter) = column_counter(name) {
                counters.add(counter, value);
            } else if name.starts_with("expect_") {
                match stats.expect.iter_mut().find(|(n, _)| n == name) {
                    Some((_, total)) => *total = total.saturating_add(value),
                    None => stats.expect.push((name.to_string(), value)),
                }
            }
        }
        stats.per_cpu.push(counters);
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINUX_6_18: &str = "entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart\n\
00000003  00000000 00000000 00000000 00000002 00000000 00000000 00000000 00000002 00000000 00000001 00000000 00000000  00000000 00000000 00000000 00000000\n\
00000003  00000001 0000000a 00000000 00000000 00000000 00000000 00000000 00000001 00000000 00000000 00000000 00000000  00000000 00000001 00000000 00000000\n";

    #[test]
    fn parses_by_column_name() {
        let stats = parse(LINUX_6_18).unwrap();
        assert_eq!(stats.entries, Some(3));
        assert_eq!(stats.per_cpu.len(), 2);
        let total = Counters::sum(&stats.per_cpu);
        assert_eq!(total.get(CpuCounter::Insert), Some(3));
        assert_eq!(total.get(CpuCounter::Drop), Some(1));
        assert_eq!(total.get(CpuCounter::Invalid), Some(2));
        assert_eq!(total.get(CpuCounter::Found), Some(10));
        assert_eq!(total.get(CpuCounter::ClashResolve), Some(1));
        assert_eq!(total.get(CpuCounter::ChainTooLong), Some(0));
        assert_eq!(
            stats.expect,
            vec![
                ("expect_new".to_string(), 0),
                ("expect_create".to_string(), 1),
                ("expect_delete".to_string(), 0)
            ]
        );
    }

    #[test]
    fn garbage_is_reported_with_line() {
        assert_eq!(parse("").unwrap_err().line, 1);
        assert!(parse("what ever\n1 2\n").is_err());
        let err = parse("entries found\n00000001\n").unwrap_err();
        assert_eq!(err.line, 2);
        let err = parse("entries found\n0000000g 00000001\n").unwrap_err();
        assert!(err.reason.contains("hexadecimal"), "{err}");
    }

    #[test]
    fn header_only_means_no_cpus() {
        let stats = parse("entries found insert\n").unwrap();
        assert!(stats.per_cpu.is_empty());
        assert_eq!(stats.entries, None);
    }
}
