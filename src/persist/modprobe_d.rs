//! modprobe.d(5) files: parser (pure) and the renderer of nfkit's own file.
//!
//! Syntax as libkmod parses it (`kmod_config_parse`): only lines whose first
//! character is `#` are comments (no inline comments: `x=1# c` passes `1#`);
//! a trailing `\` joins the next line; words are separated by white space;
//! keywords `alias`, `blacklist`, `options`, `install`, `remove`, `softdep`,
//! `weakdep`. libkmod ignores a bad line with an error; nfkit reports it with
//! file and line. Module names are normalised (`-` → `_`).

use std::path::{Path, PathBuf};

use super::values::{ModuleName, OptionName, OptionValue};

/// One module's parameters as nfkit writes them.
pub type ModuleOptions = Vec<(OptionName, OptionValue)>;

/// One directive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Directive {
    /// `alias PATTERN MODULE`.
    Alias { pattern: String, module: String },
    /// `blacklist MODULE`.
    Blacklist { module: String },
    /// `options MODULE OPT...` (the module may be an alias).
    Options {
        module: String,
        options: Vec<String>,
    },
    /// `install MODULE COMMAND...`.
    Install { module: String, command: String },
    /// `remove MODULE COMMAND...`.
    Remove { module: String, command: String },
    /// `softdep MODULE pre: A B post: C`.
    Softdep {
        module: String,
        pre: Vec<String>,
        post: Vec<String>,
    },
    /// `weakdep MODULE A B` (kmod 33+).
    Weakdep {
        module: String,
        modules: Vec<String>,
    },
}

/// A directive and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// The file.
    pub file: PathBuf,
    /// 1-based line where the directive starts.
    pub line: usize,
    /// The directive.
    pub directive: Directive,
}

/// A line libkmod would ignore with an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {reason}", file.display())]
pub struct SyntaxError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

/// Normalises a module name as libkmod does (`-` → `_`, except inside a
/// `[...]` pattern): [`ModuleName`]'s one rule.
pub fn normalize_module(name: &str) -> String {
    ModuleName::canonical(name).into_string()
}

/// Joins continuation lines; yields (first line number, logical line).
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut start = 0;
    for (index, raw) in text.lines().enumerate() {
        if current.is_empty() {
            start = index + 1;
        }
        if let Some(body) = raw.strip_suffix('\\') {
            current.push_str(body);
            current.push(' ');
        } else {
            current.push_str(raw);
            out.push((start, std::mem::take(&mut current)));
        }
    }
    if !current.is_empty() {
        out.push((start, current));
    }
    out
}

/// Parses one file's text. Good directives and bad lines are both returned,
/// so one typo does not hide the rest (libkmod also keeps going).
pub fn parse(file: &Path, text: &str) -> (Vec<Located>, Vec<SyntaxError>) {
    let mut directives = Vec::new();
    let mut errors = Vec::new();
    for (line, logical) in logical_lines(text) {
        if logical.starts_with('#') || logical.trim().is_empty() {
            continue;
        }
        let words: Vec<&str> = logical.split_whitespace().collect();
        let error = |reason: String| SyntaxError {
            file: file.to_path_buf(),
            line,
            reason,
        };
        let rest_after = |n: usize| -> String {
            // The remainder of the logical line after the first n words, as written.
            let mut remainder = logical.trim_start();
            for _ in 0..n {
                remainder = remainder.trim_start();
                let end = remainder
                    .find(char::is_whitespace)
                    .unwrap_or(remainder.len());
                remainder = &remainder[end..];
            }
            remainder.trim().to_string()
        };
        let directive = match words.as_slice() {
            ["alias", pattern, module] => Ok(Directive::Alias {
                pattern: normalize_module(pattern),
                module: normalize_module(module),
            }),
            ["blacklist", module] => Ok(Directive::Blacklist {
                module: normalize_module(module),
            }),
            ["options", module, options @ ..] => Ok(Directive::Options {
                module: normalize_module(module),
                options: options.iter().map(|s| s.to_string()).collect(),
            }),
            ["install", module, _, ..] => Ok(Directive::Install {
                module: normalize_module(module),
                command: rest_after(2),
            }),
            ["remove", module, _, ..] => Ok(Directive::Remove {
                module: normalize_module(module),
                command: rest_after(2),
            }),
            ["softdep", module, deps @ ..] => {
                let mut pre = Vec::new();
                let mut post = Vec::new();
                let mut target: Option<&mut Vec<String>> = None;
                let mut bad = None;
                for word in deps {
                    match *word {
                        "pre:" => target = Some(&mut pre),
                        "post:" => target = Some(&mut post),
                        dep => match target.as_deref_mut() {
                            Some(list) => list.push(normalize_module(dep)),
                            None => bad = Some(format!("softdep: {dep:?} before pre: or post:")),
                        },
                    }
                }
                match bad {
                    Some(reason) => Err(error(reason)),
                    None => Ok(Directive::Softdep {
                        module: normalize_module(module),
                        pre,
                        post,
                    }),
                }
            }
            ["weakdep", module, deps @ ..] if !deps.is_empty() => Ok(Directive::Weakdep {
                module: normalize_module(module),
                modules: deps.iter().map(|d| normalize_module(d)).collect(),
            }),
            [
                keyword @ ("alias" | "blacklist" | "install" | "remove" | "weakdep"),
                ..,
            ] => Err(error(format!("`{keyword}` with the wrong number of words"))),
            ["options"] | ["softdep"] => {
                Err(error(format!("`{}` without a module name", words[0])))
            }
            [keyword @ ("include" | "config"), ..] => Err(error(format!(
                "`{keyword}` is deprecated and ignored by kmod"
            ))),
            [keyword, ..] => Err(error(format!("unknown keyword `{keyword}`"))),
            [] => continue,
        };
        match directive {
            Ok(directive) => directives.push(Located {
                file: file.to_path_buf(),
                line,
                directive,
            }),
            Err(e) => errors.push(e),
        }
    }
    (directives, errors)
}

/// Renders nfkit's own modprobe.d file: one `options` line per module,
/// keyed by the real module name, in the given order.
pub fn render_options_file(header: &str, options: &[(ModuleName, ModuleOptions)]) -> String {
    let mut text = String::from(header);
    for (module, opts) in options {
        if !opts.is_empty() {
            let words: Vec<String> = opts.iter().map(|(name, value)| value.word(name)).collect();
            text.push_str(&format!("options {} {}\n", module, words.join(" ")));
        }
    }
    text
}

/// Where a module's install command makes it "disabled by policy".
pub fn is_disabling_command(command: &str) -> bool {
    matches!(
        command.split_whitespace().collect::<Vec<_>>().as_slice(),
        ["/bin/true"]
            | ["/bin/false"]
            | ["/usr/bin/true"]
            | ["/usr/bin/false"]
            | ["true"]
            | ["false"]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> Vec<Directive> {
        let (directives, errors) = parse(Path::new("t.conf"), text);
        assert!(errors.is_empty(), "{errors:?}");
        directives.into_iter().map(|l| l.directive).collect()
    }

    #[test]
    fn parses_every_keyword() {
        let text = "# comment\n\
            alias ip_conntrack nf_conntrack\n\
            blacklist nf-nat-ftp\n\
            options nf_conntrack hashsize=65536 ip_conntrack_disable_ve0=0\n\
            install ipv6 /bin/true\n\
            remove foo /sbin/rmmod foo && echo gone\n\
            softdep xt_state pre: nf_conntrack post: nf_nat\n\
            weakdep a b c\n";
        let d = parse_ok(text);
        assert_eq!(d.len(), 7);
        assert_eq!(
            d[1],
            Directive::Blacklist {
                module: "nf_nat_ftp".into()
            }
        );
        assert_eq!(
            d[2],
            Directive::Options {
                module: "nf_conntrack".into(),
                options: vec!["hashsize=65536".into(), "ip_conntrack_disable_ve0=0".into()]
            }
        );
        assert_eq!(
            d[4],
            Directive::Remove {
                module: "foo".into(),
                command: "/sbin/rmmod foo && echo gone".into()
            }
        );
        assert_eq!(
            d[5],
            Directive::Softdep {
                module: "xt_state".into(),
                pre: vec!["nf_conntrack".into()],
                post: vec!["nf_nat".into()]
            }
        );
    }

    #[test]
    fn comments_only_at_line_start_and_continuations() {
        // No inline comments: `1#` is the value, as libkmod passes it.
        let d = parse_ok("options m x=1# note\noptions m \\\n  y=2\n");
        assert_eq!(
            d[0],
            Directive::Options {
                module: "m".into(),
                options: vec!["x=1#".into(), "note".into()]
            }
        );
        assert_eq!(
            d[1],
            Directive::Options {
                module: "m".into(),
                options: vec!["y=2".into()]
            }
        );
        let (located, _) = parse(Path::new("t"), "options m \\\n  y=2\n");
        assert_eq!(located[0].line, 1);
    }

    #[test]
    fn bad_lines_are_reported_with_line_and_the_rest_kept() {
        let (d, e) = parse(
            Path::new("/etc/modprobe.d/x.conf"),
            "options\nfrobnicate m\nblacklist a b\ninclude /etc/other\nblacklist ok\n",
        );
        assert_eq!(d.len(), 1);
        let lines: Vec<usize> = e.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![1, 2, 3, 4]);
        assert_eq!(
            e[1].to_string(),
            "/etc/modprobe.d/x.conf:2: unknown keyword `frobnicate`"
        );
    }

    #[test]
    fn renders_options_keyed_by_real_name() {
        let text = render_options_file(
            "# managed by nfkit\n",
            &[
                (
                    ModuleName::canonical("nf_conntrack"),
                    vec![
                        ("hashsize".parse().unwrap(), OptionValue::from(65536u32)),
                        ("x".parse().unwrap(), "a#b".parse().unwrap()),
                    ],
                ),
                (ModuleName::canonical("x"), vec![]),
            ],
        );
        assert_eq!(
            text,
            "# managed by nfkit\noptions nf_conntrack hashsize=65536 x=a#b\n"
        );
        let d = parse_ok(&text);
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn disabling_commands() {
        assert!(is_disabling_command("/bin/true"));
        assert!(is_disabling_command(" /bin/false "));
        assert!(!is_disabling_command("/bin/true; touch /tmp/x"));
        assert!(!is_disabling_command("/sbin/modprobe --ignore-install x"));
    }
}
