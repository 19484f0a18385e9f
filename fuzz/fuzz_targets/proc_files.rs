//! /proc and module-directory text files: `/proc/net/stat/nf_conntrack`,
//! `/proc/modules`, `/proc/net/*_tables_names`, `modules.builtin`, and
//! `/proc/config.gz` (gzip, then the config lines). The first byte picks
//! the parser; any text parses (or is refused with a line
//! inside the file) without a panic, and what is returned is well formed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nfkit::fuzzing;

fuzz_target!(|data: &[u8]| {
    let (choice, rest) = data.split_first().unwrap_or((&0, &[]));
    let text = String::from_utf8_lossy(rest);
    let lines = text.lines().count();
    match choice % 5 {
        0 => match fuzzing::procstat_parse(&text) {
            Ok((_, rows, expect)) => {
                assert!(
                    rows.len() < lines.max(1),
                    "{} rows from {lines} lines",
                    rows.len()
                );
                for (name, _) in &expect {
                    assert!(name.starts_with("expect_"), "{name}");
                }
            }
            Err((line, _)) => assert!((1..=lines.max(1)).contains(&line)),
        },
        1 => {
            let modules = fuzzing::proc_modules_parse(&text);
            assert!(modules.len() <= lines);
            for (name, _, _, holders, state) in &modules {
                assert!(!name.is_empty() && !name.contains(|c: char| c.is_ascii_whitespace()));
                assert!(holders.iter().all(|h| !h.is_empty() && !h.contains(',')));
                assert!(
                    !state.is_empty() && !state.chars().any(|c| c.is_ascii_uppercase()),
                    "{state}"
                );
            }
        }
        2 => {
            let names = fuzzing::table_names_parse(&text);
            assert!(names.len() <= lines);
            assert!(names.iter().all(|n| !n.is_empty() && n.trim() == n));
        }
        4 => {
            // The raw bytes: a gzip stream, expanded within its cap or refused.
            let module = ["xt_state", "nf_conntrack_ftp", "iptable_nat", "nf_tables"]
                [rest.len() % 4];
            if let Some(hits) = fuzzing::kernel_config_lookup(rest, module) {
                for (option, value) in &hits {
                    assert!(option.starts_with("CONFIG_"), "{option}");
                    assert!(!value.contains('\n'), "{value:?}");
                }
            }
        }
        _ => {
            let names = fuzzing::builtin_names_parse(&text);
            assert!(names.len() <= lines);
            assert!(
                names
                    .iter()
                    .all(|n| !n.is_empty() && !n.contains(['-', '/', '\n'])),
                "{names:?}"
            );
        }
    }
});
