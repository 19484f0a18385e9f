//! sysctl.d: any text parses without a panic (line numbers inside the file,
//! trimmed values, a `/proc/sys` path per key); the assignments found whose
//! key is a valid sysctl.d key render and parse back to the same pairs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nfkit::fuzzing;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (lines, errors) = fuzzing::sysctl_d_parse(&text);
    let count = text.lines().count();
    for l in &lines {
        assert!((1..=count).contains(&l.line), "line {} of {count}", l.line);
        assert_eq!(l.value.trim(), l.value);
        assert!(!l.path.is_empty() && !l.path.starts_with('/') && !l.path.ends_with('/'));
        assert!(
            !l.path
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == ".."),
            "{:?}",
            l.path
        );
        assert!(!l.key.contains('=') && !l.key.contains('\n'));
    }
    for line in &errors {
        assert!((1..=count).contains(line));
    }
    // Settings as the renderer takes them: what the typed values accept
    // (keys in their dotted spelling).
    let settings: Vec<(String, String)> = lines
        .into_iter()
        .filter_map(|l| fuzzing::sysctl_setting(&l.key, &l.value))
        .collect();
    let rendered = fuzzing::sysctl_d_render("# nfkit\n", &settings);
    let (back, errors) = fuzzing::sysctl_d_parse(&rendered);
    assert!(errors.is_empty(), "errors at {errors:?}\n{rendered}");
    let back: Vec<(String, String)> = back.into_iter().map(|l| (l.key, l.value)).collect();
    assert_eq!(back, settings, "render → parse\n{rendered}");
});
