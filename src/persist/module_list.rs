//! Module load lists: modules-load.d(5) files and Debian's `/etc/modules`.
//!
//! modules-load.d: one module per line; blank lines and lines whose first
//! non-blank character is `#` or `;` are ignored; the whole stripped line is
//! the name (no parameters: systemd would look up "foo bar=1" and fail).
//! `/etc/modules` (Debian): the same, but the sysvinit script passes words
//! after the name to modprobe as parameters. Under systemd, Debian links
//! `/etc/modules-load.d/modules.conf` to it, so parameters there break; nfkit
//! never writes parameters into either file (they go to modprobe.d).
//!
//! nfkit owns `/etc/modules-load.d/nfkit.conf` entirely. In `/etc/modules`,
//! which belongs to the admin, it keeps a marked block and leaves every other
//! byte alone.

use crate::modules::name::ModuleName;

/// `items` without repeats, each kept where it first occurs; linear time
/// (a hash set), so a list of 200,000 names costs no more than reading it.
pub(crate) fn first_occurrences<T, I>(items: I) -> Vec<T>
where
    T: Eq + std::hash::Hash + Clone,
    I: IntoIterator<Item = T>,
{
    let mut seen = std::collections::HashSet::new();
    items
        .into_iter()
        .filter(|item| seen.insert(item.clone()))
        .collect()
}

/// Start marker of nfkit's block in a shared file.
pub const BLOCK_BEGIN: &str =
    "# BEGIN nfkit: managed block, edits between these lines are replaced";
/// End marker.
pub const BLOCK_END: &str = "# END nfkit";

/// One entry of a list file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    /// Module name (first word).
    pub module: String,
    /// Words after the name (parameters, `/etc/modules` only).
    pub params: Vec<String>,
    /// 1-based line.
    pub line: usize,
}

/// Parses a list file.
pub fn parse(text: &str) -> Vec<ListEntry> {
    text.lines()
        .enumerate()
        .filter_map(|(index, raw)| {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                return None;
            }
            let mut words = line.split_whitespace();
            let module = words.next()?.to_string();
            Some(ListEntry {
                module,
                params: words.map(str::to_string).collect(),
                line: index + 1,
            })
        })
        .collect()
}

/// Renders a list file owned by nfkit.
pub fn render(header: &str, modules: &[ModuleName]) -> String {
    let mut text = String::from(header);
    for module in modules {
        text.push_str(module.as_str());
        text.push('\n');
    }
    text
}

/// Errors in a shared file's managed block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    /// BEGIN without END, END without BEGIN, or two blocks.
    #[error("line {line}: broken nfkit block markers ({reason}); fix the file by hand")]
    Markers { line: usize, reason: &'static str },
}

/// The byte range of the managed block (markers included), if any.
fn block_range(text: &str) -> Result<Option<std::ops::Range<usize>>, BlockError> {
    let mut offset = 0;
    let mut begin = None;
    let mut found = None;
    for (index, line) in text.split_inclusive('\n').enumerate() {
        // Markers match whatever ends the line (CRLF, trailing blanks).
        let trimmed = line.trim_end();
        if trimmed == BLOCK_BEGIN {
            if begin.is_some() || found.is_some() {
                return Err(BlockError::Markers {
                    line: index + 1,
                    reason: "a second BEGIN",
                });
            }
            begin = Some(offset);
        } else if trimmed == BLOCK_END {
            match begin.take() {
                Some(start) => found = Some(start..offset + line.len()),
                None => {
                    return Err(BlockError::Markers {
                        line: index + 1,
                        reason: "END without BEGIN",
                    });
                }
            }
        }
        offset += line.len();
    }
    if begin.is_some() {
        return Err(BlockError::Markers {
            line: text.lines().count(),
            reason: "BEGIN without END",
        });
    }
    Ok(found)
}

/// The modules listed inside nfkit's block.
pub fn block_modules(text: &str) -> Result<Vec<String>, BlockError> {
    Ok(match block_range(text)? {
        Some(range) => parse(&text[range]).into_iter().map(|e| e.module).collect(),
        None => Vec::new(),
    })
}

/// The file's line ending: CRLF when most of its lines end so (a tie is
/// LF), so that writing the same block again changes nothing.
fn line_ending(text: &str) -> &'static str {
    super::line_endings::dominant(text)
}

/// The line ending for nfkit's block: the dominant one of the bytes around
/// the block, which a rewrite keeps (so writing the same block again
/// changes nothing, whatever the block's own lines end with); the block's
/// own when nothing around it has a line.
fn block_line_ending(text: &str, range: Option<&std::ops::Range<usize>>) -> &'static str {
    let Some(range) = range else {
        // Appended: a last line without an ending gets one first, and that
        // line is then part of the bytes around the block. After a stray
        // `\r`, an LF makes a CRLF that can tip the count: then CRLF.
        let eol = line_ending(text);
        if text.is_empty() || text.ends_with('\n') {
            return eol;
        }
        return line_ending(&format!("{text}{eol}"));
    };
    let rest = format!("{}{}", &text[..range.start], &text[range.end..]);
    if rest.contains('\n') {
        line_ending(&rest)
    } else {
        line_ending(&text[range.clone()])
    }
}

/// Replaces (or appends) nfkit's block; other bytes are kept. An empty
/// module list removes the block. The block's lines end as the rest of the
/// file's mostly do ([`block_line_ending`]).
pub fn with_block(text: &str, modules: &[ModuleName]) -> Result<String, BlockError> {
    let range = block_range(text)?;
    let eol = block_line_ending(text, range.as_ref());
    let block = if modules.is_empty() {
        String::new()
    } else {
        let mut block = format!("{BLOCK_BEGIN}{eol}");
        for module in modules {
            block.push_str(module.as_str());
            block.push_str(eol);
        }
        block.push_str(BLOCK_END);
        block.push_str(eol);
        block
    };
    Ok(match range {
        Some(range) => format!("{}{}{}", &text[..range.start], block, &text[range.end..]),
        None if block.is_empty() => text.to_string(),
        None => {
            let mut out = text.to_string();
            if !out.is_empty() && !out.ends_with('\n') {
                out.push_str(eol);
            }
            out.push_str(&block);
            out
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `module_list` fuzz target (session 5): a file whose
    /// lines end mostly in bare `\r\r\n` around a CRLF block. The line
    /// ending was chosen over the whole file, block included, so the
    /// block's own lines tipped the count: the first rewrite wrote CRLF,
    /// the second LF. Now only the bytes around the block decide.
    #[test]
    fn rewriting_a_block_is_idempotent_whatever_the_block_ends_with() {
        let text = "\r\r\nx1\r\r\n\r\r\r\n\r#/eop\nlptc\n# BEGIN nfkit: managed block, edits between these lines are replaced\nnf_cte\n# END nfkit\n\r\n\r\r\r\n\r\r\r\n\r\r\nk\n\r\r\n\r\r\r\n\r\r\n";
        let modules = [m("x1"), m("lptc"), m("k")];
        let once = with_block(text, &modules).unwrap();
        let twice = with_block(&once, &modules).unwrap();
        assert_eq!(twice, once);
        // Only the block changed.
        assert_eq!(
            with_block(&once, &[]).unwrap(),
            with_block(text, &[]).unwrap()
        );
        // A file that is only a CRLF block keeps CRLF.
        let only = with_block("", &modules).unwrap().replace('\n', "\r\n");
        assert_eq!(with_block(&only, &modules).unwrap(), only);
    }

    fn m(name: &str) -> ModuleName {
        ModuleName::parse_plain(name).unwrap()
    }

    #[test]
    fn first_occurrences_keeps_the_first_of_each_in_order() {
        let names = ["b", "a", "b", "c", "a", "d", "c"];
        assert_eq!(first_occurrences(names), vec!["b", "a", "c", "d"]);
        assert!(first_occurrences(Vec::<String>::new()).is_empty());
        // Matches the quadratic definition on generated lists.
        for seed in 0..200u64 {
            let list: Vec<u64> = (0..seed % 40).map(|i| (i * 7919 + seed) % 13).collect();
            let mut expected = Vec::new();
            for x in &list {
                if !expected.contains(x) {
                    expected.push(*x);
                }
            }
            assert_eq!(first_occurrences(list.iter().copied()), expected);
        }
    }

    const DEBIAN: &str = "# /etc/modules: kernel modules to load at boot time.\n#\n# This file contains the names of kernel modules that should be loaded\n# at boot time, one per line. Lines beginning with \"#\" are ignored.\n# Parameters can be specified after the module name.\n\nloop\nlp io=0x378\n";

    #[test]
    fn parses_names_and_params() {
        let e = parse(DEBIAN);
        assert_eq!(e.len(), 2);
        assert_eq!(
            e[1],
            ListEntry {
                module: "lp".into(),
                params: vec!["io=0x378".into()],
                line: 8
            }
        );
        assert!(parse("; c\n  # c\n\n").is_empty());
    }

    #[test]
    fn block_is_added_replaced_and_removed_keeping_other_bytes() {
        let mods = vec![m("nf_conntrack"), m("xt_state")];
        let added = with_block(DEBIAN, &mods).unwrap();
        assert!(added.starts_with(DEBIAN));
        assert_eq!(block_modules(&added).unwrap(), mods);
        assert_eq!(parse(&added).len(), 4);
        let replaced = with_block(&added, &mods[..1]).unwrap();
        assert_eq!(block_modules(&replaced).unwrap(), vec!["nf_conntrack"]);
        assert!(replaced.starts_with(DEBIAN));
        assert_eq!(with_block(&replaced, &[]).unwrap(), DEBIAN);
        assert_eq!(with_block(&added, &mods).unwrap(), added, "idempotent");
    }

    #[test]
    fn broken_markers_are_errors() {
        let text = format!("{BLOCK_BEGIN}\nx\n");
        assert!(matches!(
            with_block(&text, &[]),
            Err(BlockError::Markers {
                reason: "BEGIN without END",
                ..
            })
        ));
        let text = format!("a\n{BLOCK_END}\n");
        assert!(matches!(
            block_modules(&text),
            Err(BlockError::Markers { line: 2, .. })
        ));
    }

    #[test]
    fn render_is_one_per_line() {
        assert_eq!(render("# h\n", &[m("a"), m("b")]), "# h\na\nb\n");
    }

    /// Found by the module_list fuzz target: a marker line with a trailing
    /// blank (or CRLF) was not recognised, so a second block was appended
    /// and the modules were listed twice; and a file ending in `\r` without
    /// a newline had its block rewritten on every run.
    #[test]
    fn markers_match_with_crlf_or_trailing_blanks_and_crlf_is_kept() {
        let crlf = format!("loop\r\n{BLOCK_BEGIN}\r\nxt_state\r\n{BLOCK_END}\r\nlp\r\n");
        assert_eq!(block_modules(&crlf).unwrap(), ["xt_state"]);
        let written = with_block(&crlf, &[m("nf_nat"), m("xt_state")]).unwrap();
        assert_eq!(
            written,
            format!("loop\r\n{BLOCK_BEGIN}\r\nnf_nat\r\nxt_state\r\n{BLOCK_END}\r\nlp\r\n")
        );
        let blank = format!("{BLOCK_BEGIN} \nxt_state\n{BLOCK_END}\t\n");
        let written = with_block(&blank, &[m("nf_nat")]).unwrap();
        assert_eq!(written, format!("{BLOCK_BEGIN}\nnf_nat\n{BLOCK_END}\n"));
        assert_eq!(with_block(&written, &[]).unwrap(), "");
        // Appended to a CRLF file without a final newline: CRLF throughout.
        let appended = with_block("loop\r\nlp", &[m("nf_nat")]).unwrap();
        assert_eq!(
            appended,
            format!("loop\r\nlp\r\n{BLOCK_BEGIN}\r\nnf_nat\r\n{BLOCK_END}\r\n")
        );
        // A stray `\r` at the end: the LF that ends its line makes it a
        // CRLF line, so CRLF (and the same again on the next write).
        let stray_cr = "es\r\r";
        let once = with_block(stray_cr, &[m("nf_nat")]).unwrap();
        assert_eq!(
            once,
            format!("es\r\r\r\n{BLOCK_BEGIN}\r\nnf_nat\r\n{BLOCK_END}\r\n")
        );
        assert_eq!(with_block(&once, &[m("nf_nat")]).unwrap(), once);
    }
}
