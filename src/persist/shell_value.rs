//! The layout of one shell value holding a list of words (such as
//! `IPTABLES_MODULES="..."`), and rewriting it to a new list with the
//! smallest change: the words that stay keep their bytes and the text
//! around them (line breaks, `\` continuations, indentation); removed
//! words disappear with one separator; added words take the separator the
//! value already uses at that place (one line stays one line, one word per
//! line stays one word per line). Pure.

/// How the shell treats one piece of the quoted text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    /// Part of a word.
    Word,
    /// Blank (splits words).
    Blank,
    /// `\` + newline inside double quotes: removed by the shell, so it
    /// neither splits nor adds anything.
    Continuation,
}

/// A value written as one quoted string (`"..."` or `'...'`), split into
/// its words and the raw text between them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QuotedList {
    /// `"` or `'`.
    quote: char,
    /// Raw text before the first word (all of it when there is no word).
    lead: String,
    /// Raw text of each word and its value after quote removal.
    words: Vec<(String, String)>,
    /// Raw text between word `i` and word `i + 1`.
    seps: Vec<String>,
    /// Raw text after the last word.
    trail: String,
}

fn is_blank(c: char) -> bool {
    // The same notion of blank as `shell_vars::words`, which splits values.
    c.is_whitespace()
}

/// Splits the raw text of a value (quotes included) into a [`QuotedList`],
/// or `None` when it is not exactly one quoted string.
pub(crate) fn split(raw: &str) -> Option<QuotedList> {
    let quote = raw.chars().next().filter(|&c| c == '"' || c == '\'')?;
    if raw.len() < 2 || !raw.ends_with(quote) {
        return None;
    }
    let inner = &raw[1..raw.len() - 1];
    // Classify every piece of the inner text; a quote of the same kind
    // inside means the value is not one string (`"a"x"b"`).
    let mut units: Vec<(usize, usize, Unit)> = Vec::new();
    let mut chars = inner.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        let unit = match c {
            _ if c == quote => return None,
            '\\' if quote == '"' => match chars.peek().map(|&(_, n)| n) {
                Some('\n') => {
                    chars.next();
                    Unit::Continuation
                }
                Some('"' | '\\' | '$' | '`') => {
                    chars.next();
                    Unit::Word
                }
                // Any other backslash stays in the value, alone.
                Some(_) => Unit::Word,
                None => return None, // would escape the closing quote
            },
            _ if is_blank(c) => Unit::Blank,
            _ => Unit::Word,
        };
        let end = chars.peek().map_or(inner.len(), |&(next, _)| next);
        units.push((at, end, unit));
    }
    // Words are runs of word units, joined across continuations that have
    // no blank next to them (`a\<newline>b` is the word `ab`).
    let mut spans: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < units.len() {
        if units[i].2 != Unit::Word {
            i += 1;
            continue;
        }
        let start = units[i].0;
        let mut end = units[i].1;
        let mut j = i + 1;
        while j < units.len() {
            match units[j].2 {
                Unit::Word => {
                    end = units[j].1;
                    j += 1;
                }
                Unit::Continuation => {
                    let mut k = j;
                    while k < units.len() && units[k].2 == Unit::Continuation {
                        k += 1;
                    }
                    if k < units.len() && units[k].2 == Unit::Word {
                        j = k;
                    } else {
                        break;
                    }
                }
                Unit::Blank => break,
            }
        }
        spans.push((start, end));
        i = j;
    }
    let value_of = |text: &str| -> String {
        if quote == '\'' {
            return text.to_string();
        }
        let mut out = String::new();
        let mut it = text.chars();
        while let Some(c) = it.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match it.next() {
                Some('\n') => {}
                Some(n @ ('"' | '\\' | '$' | '`')) => out.push(n),
                Some(n) => {
                    out.push('\\');
                    out.push(n);
                }
                None => out.push('\\'),
            }
        }
        out
    };
    let Some(&(first, _)) = spans.first() else {
        return Some(QuotedList {
            quote,
            lead: inner.to_string(),
            words: Vec::new(),
            seps: Vec::new(),
            trail: String::new(),
        });
    };
    let last_end = spans.last().map_or(0, |s| s.1);
    Some(QuotedList {
        quote,
        lead: inner[..first].to_string(),
        words: spans
            .iter()
            .map(|&(s, e)| (inner[s..e].to_string(), value_of(&inner[s..e])))
            .collect(),
        seps: spans
            .windows(2)
            .map(|w| inner[w[0].1..w[1].0].to_string())
            .collect(),
        trail: inner[last_end..].to_string(),
    })
}

/// A word written for the inside of `quote`, or `None` when it cannot be
/// (a single quote inside single quotes).
fn quote_word(word: &str, quote: char) -> Option<String> {
    if quote == '\'' {
        return (!word.contains('\'')).then(|| word.to_string());
    }
    let mut out = String::with_capacity(word.len());
    for c in word.chars() {
        if matches!(c, '"' | '\\' | '$' | '`') {
            out.push('\\');
        }
        out.push(c);
    }
    Some(out)
}

/// Pairs of (old index, new index) of a longest common subsequence.
fn common(old: &[&str], new: &[&str]) -> Vec<(usize, usize)> {
    let (n, m) = (old.len(), new.len());
    if n.saturating_mul(m) > COMMON_TABLE_MAX {
        return common_large(old, new);
    }
    let mut len = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            len[i][j] = if old[i] == new[j] {
                len[i + 1][j + 1] + 1
            } else {
                len[i + 1][j].max(len[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut pairs) = (0, 0, Vec::new());
    while i < n && j < m {
        if old[i] == new[j] {
            pairs.push((i, j));
            i += 1;
            j += 1;
        } else if len[i + 1][j] >= len[i][j + 1] {
            i += 1;
        } else {
            j += 1;
        }
    }
    pairs
}

/// Above this many table cells (old × new words) [`common`] switches to
/// [`common_large`]: the table would take gigabytes for lists of tens of
/// thousands of words.
const COMMON_TABLE_MAX: usize = 1 << 22;

/// A common subsequence of long lists in O((n + m) log m): the common head
/// and tail, then, between them, each new word paired with the first unused
/// equal old word and the longest run of pairs increasing on both sides
/// kept (the longest common subsequence when words are unique, as module
/// names are).
fn common_large(old: &[&str], new: &[&str]) -> Vec<(usize, usize)> {
    let head = old.iter().zip(new).take_while(|(a, b)| a == b).count();
    let tail = old[head..]
        .iter()
        .rev()
        .zip(new[head..].iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let (old_mid, new_mid) = (&old[head..old.len() - tail], &new[head..new.len() - tail]);
    let mut positions: std::collections::HashMap<&str, std::collections::VecDeque<usize>> =
        std::collections::HashMap::new();
    for (i, w) in old_mid.iter().enumerate() {
        positions.entry(*w).or_default().push_back(i);
    }
    let candidates: Vec<(usize, usize)> = new_mid
        .iter()
        .enumerate()
        .filter_map(|(j, w)| {
            positions
                .get_mut(*w)
                .and_then(|q| q.pop_front())
                .map(|i| (i, j))
        })
        .collect();
    // Longest increasing run of old indices (patience sorting).
    let mut tops: Vec<usize> = Vec::new(); // index into candidates ending a run of each length
    let mut back: Vec<Option<usize>> = vec![None; candidates.len()];
    for (k, &(i, _)) in candidates.iter().enumerate() {
        let len = tops.partition_point(|&t| candidates[t].0 < i);
        back[k] = len.checked_sub(1).map(|l| tops[l]);
        if len == tops.len() {
            tops.push(k);
        } else {
            tops[len] = k;
        }
    }
    let mut middle = Vec::new();
    let mut k = tops.last().copied();
    while let Some(at) = k {
        let (i, j) = candidates[at];
        middle.push((i + head, j + head));
        k = back[at];
    }
    middle.reverse();
    let mut pairs: Vec<(usize, usize)> = (0..head).map(|i| (i, i)).collect();
    pairs.extend(middle);
    pairs.extend((0..tail).map(|t| (old.len() - tail + t, new.len() - tail + t)));
    pairs
}

impl QuotedList {
    /// The same list in double quotes (for a word single quotes cannot
    /// hold): the blanks between words are the same in both.
    fn to_double(&self) -> QuotedList {
        QuotedList {
            quote: '"',
            lead: self.lead.clone(),
            words: self
                .words
                .iter()
                .map(|(_, value)| (quote_word(value, '"').unwrap_or_default(), value.clone()))
                .collect(),
            seps: self.seps.clone(),
            trail: self.trail.clone(),
        }
    }

    /// The separator for a word added where the value gives no example:
    /// the most used one between words; with fewer than two words, a line
    /// break when the value starts on a new line (`"\n  a\n"`), else a space.
    fn usual_separator(&self) -> String {
        let mut counts: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for sep in &self.seps {
            *counts.entry(sep.as_str()).or_default() += 1;
        }
        let mut best: Option<(&str, usize)> = None;
        for sep in &self.seps {
            let count = counts[sep.as_str()];
            if best.is_none_or(|(_, c)| count >= c) {
                best = Some((sep, count));
            }
        }
        if let Some((sep, _)) = best {
            return sep.to_string();
        }
        if !self.lead.contains('\n') {
            " ".into()
        } else if self.lead.starts_with('\\') || !self.lead.chars().any(is_blank) {
            // `"\<newline>    a"`: continue the style, with a blank before it.
            format!(" {}", self.lead)
        } else {
            self.lead.to_string()
        }
    }

    /// The value (quotes included) holding `new` words, changed as little as
    /// possible; `None` when a word cannot be written in this quoting.
    pub(crate) fn rewrite(&self, new: &[String]) -> Option<String> {
        if self.quote == '\'' && new.iter().any(|w| w.contains('\'')) {
            return self.to_double().rewrite(new);
        }
        let q = self.quote;
        if self.words.is_empty() {
            let inner = if new.is_empty() {
                self.lead.to_string()
            } else {
                let quoted: Option<Vec<String>> = new.iter().map(|w| quote_word(w, q)).collect();
                let quoted = quoted?;
                if q == '"' && self.lead.contains("\\\n") {
                    format!("\\\n{}", quoted.join(" \\\n"))
                } else if self.lead.contains('\n') {
                    format!("\n{}\n", quoted.join("\n"))
                } else {
                    quoted.join(" ")
                }
            };
            return Some(format!("{q}{inner}{q}"));
        }
        if new.is_empty() {
            // Keep how the value opens (`"\n`, `"\<newline>`), without the
            // indentation of the words that went.
            let inner = if self.lead.contains('\n') {
                self.lead.trim_end_matches([' ', '\t'])
            } else {
                ""
            };
            return Some(format!("{q}{inner}{q}"));
        }
        let old_values: Vec<&str> = self.words.iter().map(|(_, v)| v.as_str()).collect();
        let new_values: Vec<&str> = new.iter().map(String::as_str).collect();
        let pairs = common(&old_values, &new_values);
        // For each new word, the old word it keeps, or the removed old word
        // whose place it takes (between two kept words, the k-th added word
        // replaces the k-th removed one): a renamed module stays on its line.
        let mut kept: Vec<Option<usize>> = vec![None; new.len()];
        let mut replaces: Vec<Option<usize>> = vec![None; new.len()];
        let (mut next_old, mut next_new) = (0, 0);
        for &(i, j) in pairs
            .iter()
            .chain(std::iter::once(&(old_values.len(), new.len())))
        {
            for (slot, old_i) in (next_new..j).zip(next_old..i) {
                replaces[slot] = Some(old_i);
            }
            if j < new.len() {
                kept[j] = Some(i);
            }
            (next_old, next_new) = (i + 1, j + 1);
        }
        let usual = self.usual_separator();
        let after_old = |i: usize| -> String {
            self.seps
                .get(i)
                .map_or_else(|| usual.clone(), |s| s.to_string())
        };
        let mut out = String::new();
        out.push(q);
        out.push_str(&self.lead);
        let mut anchor: Option<usize> = None; // last kept old word so far
        for (j, word) in new.iter().enumerate() {
            if j > 0 {
                let sep = match kept[j].or(replaces[j]) {
                    // A kept word keeps the separator before it (its line),
                    // and so does a word taking a removed word's place.
                    Some(i) if i > 0 => self.seps[i - 1].to_string(),
                    // An added word follows the style after its neighbour.
                    _ => match anchor {
                        Some(i) => after_old(i),
                        None => after_old(0),
                    },
                };
                out.push_str(&sep);
            }
            match (kept[j], replaces[j]) {
                (Some(i), _) => {
                    out.push_str(&self.words[i].0);
                    anchor = Some(i);
                }
                (None, Some(i)) => {
                    out.push_str(&quote_word(word, q)?);
                    anchor = Some(i);
                }
                (None, None) => out.push_str(&quote_word(word, q)?),
            }
        }
        out.push_str(&self.trail);
        out.push(q);
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_200000_word_value_is_rewritten_without_a_quadratic_table() {
        // The table alone would be 200,000² cells (320 GB): this finishes
        // only through common_large.
        let old: Vec<String> = (0..200_000).map(|i| format!("nf_m{i}")).collect();
        let text = format!("IPTABLES_MODULES=\"{}\"\n", old.join(" "));
        let mut new: Vec<String> = old
            .iter()
            .filter(|w| !w.ends_with("000"))
            .cloned()
            .collect();
        new.push("xt_new".into());
        let out = crate::persist::shell_vars::set_words(&text, "IPTABLES_MODULES", &new).unwrap();
        let parsed = crate::persist::shell_vars::parse(&out).unwrap();
        let value = crate::persist::shell_vars::find(&parsed, "IPTABLES_MODULES").unwrap();
        assert_eq!(crate::persist::shell_vars::words(&value.value), new);
    }

    #[test]
    fn common_large_finds_as_many_pairs_as_the_table_on_unique_words() {
        let mut rng: u64 = 7;
        let mut next = |n: u64| {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (rng >> 33) % n
        };
        for _ in 0..300 {
            let pool: Vec<String> = (0..next(30) + 1).map(|i| format!("m{i}")).collect();
            let pick = |next: &mut dyn FnMut(u64) -> u64| {
                let mut v: Vec<&str> = pool
                    .iter()
                    .filter(|_| next(3) > 0)
                    .map(String::as_str)
                    .collect();
                for k in (1..v.len()).rev() {
                    if next(4) == 0 {
                        v.swap(k, next(k as u64 + 1) as usize);
                    }
                }
                v
            };
            let old = pick(&mut next);
            let new = pick(&mut next);
            let exact = common(&old, &new);
            let large = common_large(&old, &new);
            assert_eq!(exact.len(), large.len(), "{old:?} {new:?}");
            // A common subsequence: equal words, increasing on both sides.
            for w in large.windows(2) {
                assert!(w[0].0 < w[1].0 && w[0].1 < w[1].1, "{large:?}");
            }
            assert!(large.iter().all(|&(i, j)| old[i] == new[j]));
        }
    }

    fn words(list: &[&str]) -> Vec<String> {
        list.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn splits_lines_continuations_and_escapes() {
        let l = split("\"\\\n    a \\\n    b\\\nc  \\\"d\n\"").unwrap();
        assert_eq!(l.lead, "\\\n    ");
        assert_eq!(
            l.words.iter().map(|w| w.1.as_str()).collect::<Vec<_>>(),
            ["a", "bc", "\"d"]
        );
        assert_eq!(l.seps, [" \\\n    ", "  "]);
        assert_eq!(l.trail, "\n");
        let single = split("'a\\\nb'").unwrap();
        assert_eq!(
            single
                .words
                .iter()
                .map(|w| w.1.as_str())
                .collect::<Vec<_>>(),
            ["a\\", "b"],
            "no continuation inside single quotes"
        );
        assert!(split("\"a\"b\"c\"").is_none());
        assert!(split("abc").is_none());
        assert_eq!(split("\"\"").unwrap().lead, "");
    }

    #[test]
    fn one_line_stays_one_line() {
        let l = split("\"a b  c\"").unwrap();
        assert_eq!(
            l.rewrite(&words(&["a", "x", "c", "d"])).unwrap(),
            "\"a x  c  d\"" // ties: the separator used last
        );
        assert_eq!(l.rewrite(&words(&["c"])).unwrap(), "\"c\"");
        assert_eq!(l.rewrite(&[]).unwrap(), "\"\"");
        let padded = split("\" a b \"").unwrap();
        assert_eq!(padded.rewrite(&words(&["b", "z"])).unwrap(), "\" b z \"");
    }

    #[test]
    fn one_word_per_line_stays_so_with_its_indentation() {
        let l = split("\"\n  a\n  b\n  c\n\"").unwrap();
        assert_eq!(
            l.rewrite(&words(&["a", "c", "d"])).unwrap(),
            "\"\n  a\n  c\n  d\n\""
        );
        assert_eq!(
            l.rewrite(&words(&["x", "a", "b", "c"])).unwrap(),
            "\"\n  x\n  a\n  b\n  c\n\""
        );
        let one = split("\"\nip_conntrack\n\"").unwrap();
        assert_eq!(
            one.rewrite(&words(&["nf_conntrack", "xt_state"])).unwrap(),
            "\"\nnf_conntrack\nxt_state\n\""
        );
    }

    #[test]
    fn renamed_words_take_the_place_of_the_old_ones() {
        // import turns 2.6-era names into today's: every word changes, the
        // layout stays.
        let list = split("\"ip_conntrack ip_conntrack_ftp ip_nat_ftp \\\n    ipt_state\"").unwrap();
        assert_eq!(
            list.rewrite(&words(&[
                "nf_conntrack",
                "nf_conntrack_ftp",
                "nf_nat_ftp",
                "xt_state"
            ]))
            .unwrap(),
            "\"nf_conntrack nf_conntrack_ftp nf_nat_ftp \\\n    xt_state\""
        );
        // One word per line: a renamed word keeps its line and indentation.
        let list = split("\"\n  a\n  b\n  c\n\"").unwrap();
        assert_eq!(
            list.rewrite(&words(&["a", "x", "c", "d"])).unwrap(),
            "\"\n  a\n  x\n  c\n  d\n\""
        );
    }

    #[test]
    fn continuations_are_kept() {
        let l = split("\"\\\n    a \\\n    b\"").unwrap();
        assert_eq!(
            l.rewrite(&words(&["a", "b", "c"])).unwrap(),
            "\"\\\n    a \\\n    b \\\n    c\""
        );
        let one = split("\"\\\n    a\"").unwrap();
        assert_eq!(
            one.rewrite(&words(&["a", "b"])).unwrap(),
            "\"\\\n    a \\\n    b\""
        );
        // Emptied, the value keeps its opening; filled again, its style.
        let emptied = l.rewrite(&[]).unwrap();
        assert_eq!(emptied, "\"\\\n\"");
        assert_eq!(
            split(&emptied)
                .unwrap()
                .rewrite(&words(&["a", "b"]))
                .unwrap(),
            "\"\\\na \\\nb\""
        );
        let pcs = split("\"\n  a\n  b\n\"").unwrap();
        assert_eq!(pcs.rewrite(&[]).unwrap(), "\"\n\"");
    }

    #[test]
    fn added_words_are_quoted_for_the_style() {
        let l = split("\"a\"").unwrap();
        assert_eq!(
            l.rewrite(&words(&["a", "x\"$`\\"])).unwrap(),
            "\"a x\\\"\\$\\`\\\\\""
        );
        // Single quotes cannot hold a `'`: the value moves to double quotes,
        // layout kept.
        assert_eq!(
            split("'\n  a\n  b$\n'")
                .unwrap()
                .rewrite(&words(&["a", "b$", "it's"]))
                .unwrap(),
            "\"\n  a\n  b\\$\n  it's\n\""
        );
    }
}
