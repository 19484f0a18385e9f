//! modprobe.d: any text parses without a panic, with line numbers inside the
//! file and normalised module names; the `options` lines found render (as
//! nfkit's own file) and parse back to exactly the same directives.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nfkit::fuzzing::{self, Directive};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (directives, errors) = fuzzing::modprobe_d_parse(&text);
    let lines = text.lines().count();
    let mut previous = 0;
    for (line, directive) in &directives {
        assert!((1..=lines).contains(line), "line {line} of {lines}");
        assert!(*line > previous, "lines out of order");
        previous = *line;
        let modules: Vec<&String> = match directive {
            Directive::Alias { pattern, module } => vec![pattern, module],
            Directive::Blacklist { module } | Directive::Options { module, .. } => vec![module],
            Directive::Install { module, command } | Directive::Remove { module, command } => {
                assert!(!command.is_empty() && command.trim() == command);
                vec![module]
            }
            Directive::Softdep { module, pre, post } => {
                std::iter::once(module).chain(pre).chain(post).collect()
            }
            Directive::Weakdep { module, modules } => {
                std::iter::once(module).chain(modules).collect()
            }
        };
        for m in modules {
            assert!(
                !m.is_empty() && !m.contains('-') && !m.contains(char::is_whitespace),
                "{m:?}"
            );
        }
    }
    for line in &errors {
        assert!((1..=lines).contains(line), "error line {line} of {lines}");
    }

    // The renderer's contract: words as parsed, and no line ending in a
    // backslash (modprobe.d has no escape for it; nfkit.toml validation
    // refuses such values, checked by the desired_files target).
    let options: Vec<(String, Vec<String>)> = directives
        .iter()
        .filter_map(|(_, d)| match d {
            Directive::Options { module, options }
                if !options.is_empty() && !options.last().is_some_and(|o| o.ends_with('\\')) =>
            {
                Some((module.clone(), options.clone()))
            }
            _ => None,
        })
        .collect();
    let rendered = fuzzing::modprobe_d_render("# nfkit\n", &options);
    let (back, errors) = fuzzing::modprobe_d_parse(&rendered);
    assert!(errors.is_empty(), "errors at {errors:?}\n{rendered}");
    let back: Vec<(String, Vec<String>)> = back
        .into_iter()
        .map(|(_, d)| match d {
            Directive::Options { module, options } => (module, options),
            other => panic!("render wrote {other:?}\n{rendered}"),
        })
        .collect();
    assert_eq!(back, options, "render → parse\n{rendered}");
});
