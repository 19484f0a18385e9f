//! Module options: `options::split` (modprobe.d values, the kernel's
//! `next_arg`) takes any text; options accepted from the command line
//! (`parse_given`) survive `join` → `split` unchanged, in order.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nfkit::fuzzing;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for (name, value) in fuzzing::options_split(&text) {
        // A word never holds the quotes that delimit it.
        assert!(!name.contains('"') && !value.as_deref().unwrap_or("").contains('"'));
    }
    let given: Vec<(String, Option<String>)> = text
        .split('\n')
        .filter_map(|line| fuzzing::options_parse_given(line).ok())
        .collect();
    let joined = fuzzing::options_join(&given);
    assert_eq!(
        fuzzing::options_split(&joined),
        given,
        "join → split\n{joined}"
    );
});
