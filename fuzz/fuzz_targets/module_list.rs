//! modules-load.d and `/etc/modules`: any text parses to names without
//! blanks; the names render and parse back; nfkit's block in `/etc/modules`
//! reads back what was written, leaves every other byte alone, is written
//! once (no second block) and rewriting it is idempotent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nfkit::fuzzing::{self, BLOCK_BEGIN, BLOCK_END};

fn markers(text: &str, marker: &str) -> usize {
    text.lines().filter(|l| l.trim_end() == marker).count()
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let entries = fuzzing::module_list_parse(&text);
    let count = text.lines().count();
    for (line, module, params) in &entries {
        assert!((1..=count).contains(line));
        assert!(!module.is_empty() && !module.contains(char::is_whitespace));
        assert!(!module.starts_with(['#', ';']));
        assert!(
            params
                .iter()
                .all(|p| !p.is_empty() && !p.contains(char::is_whitespace))
        );
    }
    // The renderers take what the module name type accepts (canonical).
    let modules: Vec<String> = entries
        .iter()
        .filter_map(|(_, m, _)| fuzzing::module_name(m))
        .collect();

    let rendered = fuzzing::module_list_render("# nfkit\n", &modules);
    let back: Vec<String> = fuzzing::module_list_parse(&rendered)
        .into_iter()
        .map(|(_, m, params)| {
            assert!(params.is_empty());
            m
        })
        .collect();
    assert_eq!(back, modules, "render → parse\n{rendered}");

    let Ok(_) = fuzzing::module_list_block(&text) else {
        // Broken markers: nothing is written either.
        assert!(fuzzing::module_list_with_block(&text, &modules).is_err());
        return;
    };
    let written = fuzzing::module_list_with_block(&text, &modules).expect("block replaced");
    assert_eq!(
        fuzzing::module_list_block(&written).unwrap(),
        modules,
        "{written}"
    );
    assert!(
        markers(&written, BLOCK_BEGIN) <= 1,
        "second block\n{written:?}"
    );
    assert!(
        markers(&written, BLOCK_END) <= 1,
        "second block\n{written:?}"
    );
    assert_eq!(
        fuzzing::module_list_with_block(&written, &modules).unwrap(),
        written,
        "rewriting the block is not idempotent"
    );
    // Other bytes: with the block removed, both texts are the same (up to
    // the newline added before an appended block).
    let before = fuzzing::module_list_with_block(&text, &[]).unwrap();
    let after = fuzzing::module_list_with_block(&written, &[]).unwrap();
    assert!(
        after == before || after == format!("{before}\n") || after == format!("{before}\r\n"),
        "bytes outside the block changed\n{before:?}\n{after:?}"
    );
});
