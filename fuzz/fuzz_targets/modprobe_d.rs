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
            // Normalised as libkmod does (`-` → `_` outside `[...]`).
            assert!(
                !m.is_empty()
                    && fuzzing::normalize_module(m) == *m
                    && !m.contains(char::is_whitespace),
                "{m:?}"
            );
        }
    }
    for line in &errors {
        assert!((1..=lines).contains(line), "error line {line} of {lines}");
    }

    // The renderer's contract: the typed values (a module name, `name=value`
    // words the types accept).
    let options: Vec<(String, Vec<String>)> = directives
        .iter()
        .filter_map(|(_, d)| match d {
            Directive::Options { module, options } => {
                let module = fuzzing::module_name(module)?;
                let words: Vec<String> =
                    options.iter().filter_map(|w| fuzzing::option_word(w)).collect();
                (!words.is_empty()).then_some((module, words))
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
