//! Glob keys in sysctl.d files (`net.netfilter.nf_conntrack_tcp_timeout_* = 60`):
//! whether a pattern sets a key (pure).
//!
//! systemd-sysctl (since v246; procps-ng 4 does the same) expands a glob key
//! with glob(3) under `/proc/sys`, with `GLOB_BRACE` and without
//! `GLOB_PERIOD`, in the C locale:
//! - `{a,b}` alternatives are expanded first (nested braces too; a brace
//!   without its closing `}` disables expansion and is a plain character);
//! - then each `/`-separated component of the pattern is matched against one
//!   name with fnmatch(3) rules: `*` (any run), `?` (one character),
//!   `[...]` (a set: `!` or `^` negates, `a-z` ranges in byte order,
//!   `[:alpha:]`-style classes, `[.c.]` and `[=c=]` for one character, `]`
//!   first is literal, an unterminated `[` is a plain `[`), and `\` quotes
//!   the next character;
//! - a name's leading `.` matches only a literal `.`.
//!
//! A key is a glob when it contains `*`, `?` or `[` (braces alone are not:
//! such a key is written as it stands). Patterns are matched against keys in
//! their `/proc/sys` relative form (`net/netfilter/...`), after the same
//! `.`/`/` normalisation as plain keys.

/// Whether systemd treats `key` as a glob.
pub fn is_glob(key: &str) -> bool {
    key.contains(['*', '?', '['])
}

/// Whether `pattern` (a normalised glob key) matches the key at `path`
/// (normalised relative `/proc/sys` path), as glob(3) would if the key exists.
pub fn matches(pattern: &str, path: &str) -> bool {
    let names: Vec<&[u8]> = components(path);
    expand_braces(pattern.as_bytes()).iter().any(|alternative| {
        let parts = components_bytes(alternative);
        parts.len() == names.len()
            && parts
                .iter()
                .zip(&names)
                .all(|(part, name)| fnmatch(part, name))
    })
}

fn components(path: &str) -> Vec<&[u8]> {
    path.split('/')
        .filter(|c| !c.is_empty())
        .map(str::as_bytes)
        .collect()
}

/// Splits a pattern at `/`; a quoted slash (`\/`) is a separator too.
fn components_bytes(pattern: &[u8]) -> Vec<Vec<u8>> {
    let mut parts = vec![Vec::new()];
    let mut i = 0;
    while i < pattern.len() {
        match (pattern[i], pattern.get(i + 1)) {
            (b'\\', Some(b'/')) | (b'/', _) => {
                parts.push(Vec::new());
                i += if pattern[i] == b'/' { 1 } else { 2 };
            }
            (b'\\', Some(&q)) => {
                parts.last_mut().expect("one part").extend([b'\\', q]);
                i += 2;
            }
            (b, _) => {
                parts.last_mut().expect("one part").push(b);
                i += 1;
            }
        }
    }
    parts.retain(|p| !p.is_empty());
    parts
}

/// Expands `{a,b}` alternatives the way glob(3) does with `GLOB_BRACE`.
fn expand_braces(pattern: &[u8]) -> Vec<Vec<u8>> {
    // The first unquoted `{`.
    let mut start = None;
    let mut i = 0;
    while i < pattern.len() {
        match pattern[i] {
            b'\\' if i + 1 < pattern.len() => i += 2,
            b'{' => {
                start = Some(i);
                break;
            }
            _ => i += 1,
        }
    }
    let Some(open) = start else {
        return vec![pattern.to_vec()];
    };
    // Split the alternatives at depth-1 commas up to the matching `}`.
    let mut alternatives = Vec::new();
    let mut depth = 0usize;
    let mut begin = open + 1;
    let mut close = None;
    let mut j = open + 1;
    while j < pattern.len() {
        match pattern[j] {
            b'\\' if j + 1 < pattern.len() => {
                j += 2;
                continue;
            }
            b'{' => depth += 1,
            b'}' if depth > 0 => depth -= 1,
            b'}' => {
                alternatives.push(&pattern[begin..j]);
                close = Some(j);
                break;
            }
            b',' if depth == 0 => {
                alternatives.push(&pattern[begin..j]);
                begin = j + 1;
            }
            _ => {}
        }
        j += 1;
    }
    let Some(close) = close else {
        // Not well formed: no brace expansion at all.
        return vec![pattern.to_vec()];
    };
    let (prefix, rest) = (&pattern[..open], &pattern[close + 1..]);
    let mut out = Vec::new();
    for alternative in alternatives {
        let mut one = prefix.to_vec();
        one.extend_from_slice(alternative);
        one.extend_from_slice(rest);
        out.extend(expand_braces(&one));
    }
    out
}

/// fnmatch(3) of one name, with `FNM_PERIOD` and without `FNM_NOESCAPE`.
fn fnmatch(pattern: &[u8], name: &[u8]) -> bool {
    if name.first() == Some(&b'.') {
        // Only a literal (possibly quoted) `.` matches a leading period.
        let literal = match pattern {
            [b'.', ..] => 1,
            [b'\\', b'.', ..] => 2,
            _ => return false,
        };
        return match_from(&pattern[literal..], &name[1..]);
    }
    match_from(pattern, name)
}

/// The pattern element at the start of `pattern`.
enum Element {
    /// `*`.
    Star,
    /// `?`.
    Any,
    /// One byte, and the element's length in the pattern.
    Byte(u8, usize),
    /// A bracket set: whether it matches the byte, and its length.
    Set(Bracket, usize),
    /// The pattern cannot match anything (trailing `\`, bad class name).
    Never,
}

fn element(pattern: &[u8]) -> Element {
    match pattern[0] {
        b'*' => Element::Star,
        b'?' => Element::Any,
        b'\\' => match pattern.get(1) {
            Some(&b) => Element::Byte(b, 2),
            None => Element::Never,
        },
        b'[' => match Bracket::parse(pattern) {
            Parsed::Set(set, len) => Element::Set(set, len),
            Parsed::Unterminated => Element::Byte(b'[', 1),
            Parsed::Invalid => Element::Never,
        },
        b => Element::Byte(b, 1),
    }
}

/// Backtracking matcher (the usual single-star restart is enough for `*`).
fn match_from(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut restart: Option<(usize, usize)> = None;
    loop {
        if p < pattern.len() {
            let step = match element(&pattern[p..]) {
                Element::Star => {
                    restart = Some((p + 1, n));
                    p += 1;
                    continue;
                }
                Element::Never => return false,
                Element::Any => (n < name.len()).then_some(1),
                Element::Byte(b, len) => (name.get(n) == Some(&b)).then_some(len),
                Element::Set(set, len) => {
                    name.get(n).is_some_and(|&c| set.contains(c)).then_some(len)
                }
            };
            if let Some(len) = step {
                p += len;
                n += 1;
                continue;
            }
        } else if n == name.len() {
            return true;
        }
        match restart {
            Some((after_star, from)) if from < name.len() => {
                restart = Some((after_star, from + 1));
                p = after_star;
                n = from + 1;
            }
            _ => return false,
        }
    }
}

/// A parsed `[...]` expression.
struct Bracket {
    negated: bool,
    items: Vec<Item>,
}

enum Item {
    Byte(u8),
    Range(u8, u8),
    Class(fn(u8) -> bool),
}

enum Parsed {
    Set(Bracket, usize),
    /// No closing `]`: the `[` is an ordinary character.
    Unterminated,
    /// An unknown `[:class:]` name: fnmatch(3) fails the whole match.
    Invalid,
}

fn class(name: &[u8]) -> Option<fn(u8) -> bool> {
    Some(match name {
        b"alpha" => |c: u8| c.is_ascii_alphabetic(),
        b"digit" => |c: u8| c.is_ascii_digit(),
        b"alnum" => |c: u8| c.is_ascii_alphanumeric(),
        b"upper" => |c: u8| c.is_ascii_uppercase(),
        b"lower" => |c: u8| c.is_ascii_lowercase(),
        b"space" => |c: u8| matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c),
        b"blank" => |c: u8| matches!(c, b' ' | b'\t'),
        b"punct" => |c: u8| c.is_ascii_punctuation(),
        b"xdigit" => |c: u8| c.is_ascii_hexdigit(),
        b"cntrl" => |c: u8| c.is_ascii_control(),
        b"graph" => |c: u8| c.is_ascii_graphic(),
        b"print" => |c: u8| c.is_ascii_graphic() || c == b' ',
        _ => return None,
    })
}

impl Bracket {
    /// Parses `pattern`, which starts with `[`.
    fn parse(pattern: &[u8]) -> Parsed {
        let mut i = 1;
        let negated = matches!(pattern.get(i), Some(b'!' | b'^'));
        if negated {
            i += 1;
        }
        let mut items = Vec::new();
        let mut first = true;
        loop {
            let Some(&c) = pattern.get(i) else {
                return Parsed::Unterminated;
            };
            if c == b']' && !first {
                return Parsed::Set(Bracket { negated, items }, i + 1);
            }
            first = false;
            // A class name.
            if c == b'[' && pattern.get(i + 1) == Some(&b':') {
                let rest = &pattern[i + 2..];
                if let Some(end) = rest.windows(2).position(|w| w == b":]") {
                    match class(&rest[..end]) {
                        Some(f) => items.push(Item::Class(f)),
                        None => return Parsed::Invalid,
                    }
                    i += 2 + end + 2;
                    continue;
                }
            }
            // A collating symbol `[.c.]` or an equivalence class `[=c=]`:
            // one character in the C locale; anything else fails the match.
            if c == b'[' && matches!(pattern.get(i + 1), Some(b'.' | b'=')) {
                let kind = pattern[i + 1];
                let rest = &pattern[i + 2..];
                let end = rest.windows(2).position(|w| w == [kind, b']']);
                match end {
                    Some(1) => {
                        items.push(Item::Byte(rest[0]));
                        i += 2 + 1 + 2;
                        continue;
                    }
                    _ => return Parsed::Invalid,
                }
            }
            // One (possibly quoted) byte, maybe the start of a range.
            let (low, len) = match c {
                b'\\' => match pattern.get(i + 1) {
                    Some(&q) => (q, 2),
                    None => return Parsed::Unterminated,
                },
                _ => (c, 1),
            };
            i += len;
            if pattern.get(i) == Some(&b'-') && pattern.get(i + 1).is_some_and(|&e| e != b']') {
                let (high, len) = match pattern[i + 1] {
                    b'\\' => match pattern.get(i + 2) {
                        Some(&q) => (q, 3),
                        None => return Parsed::Unterminated,
                    },
                    e => (e, 2),
                };
                items.push(Item::Range(low, high));
                i += len;
            } else {
                items.push(Item::Byte(low));
            }
        }
    }

    fn contains(&self, c: u8) -> bool {
        let hit = self.items.iter().any(|item| match *item {
            Item::Byte(b) => b == c,
            Item::Range(low, high) => low <= c && c <= high,
            Item::Class(f) => f(c),
        });
        hit != self.negated
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn examples() {
        let key = "net/netfilter/nf_conntrack_tcp_timeout_close_wait";
        assert!(matches("net/netfilter/nf_conntrack_tcp_timeout_*", key));
        assert!(matches("net/*/nf_conntrack_tcp_timeout_close?wait", key));
        assert!(matches(
            "net/netfilter/nf_conntrack_{udp,tcp}_timeout_c*",
            key
        ));
        assert!(matches(
            "net/netfilter/nf_conntrack_tcp_timeout_[a-c]*",
            key
        ));
        assert!(!matches(
            "net/netfilter/nf_conntrack_tcp_timeout_[!c]*",
            key
        ));
        assert!(!matches("net/*", key), "`*` stops at `/`");
        assert!(!matches(
            "net/netfilter/nf_conntrack_tcp_timeout_close",
            key
        ));
        assert!(matches("net/netfilter/nf_conntrack_tcp_\\timeout_*", key));
        assert!(
            !matches("net/netfilter/*\\", key),
            "a trailing backslash never matches"
        );
        assert!(!matches("a/*", "a/.hidden"));
        assert!(matches("a/.*", "a/.hidden"));
        assert!(matches("a/[b", "a/[b"), "an unterminated `[` is literal");
        assert!(matches("a/{b", "a/{b"), "an unterminated `{{` is literal");
        assert!(matches("a/[]x]", "a/]"));
        assert!(matches("a/[[:digit:]]", "a/7"));
        assert!(!matches("a/[[:nope:]]", "a/7"));
        assert!(is_glob("a/*") && is_glob("a/[b") && is_glob("a?") && !is_glob("a/{b,c}"));
    }

    /// Strategy: small names over a few letters plus the characters that
    /// matter to glob(3).
    fn name() -> impl Strategy<Value = String> {
        proptest::string::string_regex("[.]?[abc_:\\]\\[{},!^-]{0,5}").expect("regex")
    }

    fn pattern_component() -> impl Strategy<Value = String> {
        let atom = prop_oneof![
            4 => proptest::string::string_regex("[abc_.]").expect("regex"),
            2 => Just("*".to_string()),
            2 => Just("?".to_string()),
            1 => Just("\\".to_string()),
            1 => Just("\\*".to_string()),
            1 => Just("-".to_string()),
            1 => Just(",".to_string()),
            1 => Just("]".to_string()),
            1 => Just("[".to_string()),
            1 => Just("{".to_string()),
            1 => Just("}".to_string()),
            1 => Just("!".to_string()),
            1 => Just("^".to_string()),
            2 => proptest::string::string_regex("\\[[!^]?\\]?[abc_.-]{0,3}\\]").expect("regex"),
            1 => Just("[a-b]".to_string()),
            1 => Just("[[:alpha:]]".to_string()),
            1 => Just("[[:punct:]_]".to_string()),
            2 => proptest::string::string_regex("\\{[abc*]{0,2}(,[abc*]{0,2}){0,2}\\}").expect("regex"),
        ];
        proptest::collection::vec(atom, 0..5).prop_map(|atoms| atoms.concat())
    }

    /// glob(3) itself over a real directory tree: the reference.
    fn glob_reference(dir: &std::path::Path, pattern: &str) -> std::collections::BTreeSet<String> {
        use std::ffi::{CStr, CString};
        let full = CString::new(format!("{}/{pattern}", dir.display())).expect("no NUL");
        // SAFETY: glob_t is a plain C struct; all-zero is its documented initial state.
        let mut g: libc::glob_t = unsafe { std::mem::zeroed() };
        // SAFETY: `full` is a valid C string, `g` is initialised, no error callback.
        let rc = unsafe {
            libc::glob(
                full.as_ptr(),
                libc::GLOB_BRACE | libc::GLOB_NOSORT,
                None,
                &mut g,
            )
        };
        let mut found = std::collections::BTreeSet::new();
        if rc == 0 {
            for i in 0..g.gl_pathc {
                // SAFETY: glob filled gl_pathv with gl_pathc valid C strings.
                let path = unsafe { CStr::from_ptr(*g.gl_pathv.add(i)) };
                let path = path.to_string_lossy();
                let rel = path
                    .strip_prefix(&format!("{}/", dir.display()))
                    .expect("under dir");
                let rel = rel.trim_end_matches('/');
                // `.` and `..` entries are directories: systemd cannot write them.
                if !rel.is_empty()
                    && rel
                        .split('/')
                        .filter(|c| !c.is_empty())
                        .all(|c| c != "." && c != "..")
                {
                    found.insert(
                        rel.split('/')
                            .filter(|c| !c.is_empty())
                            .collect::<Vec<_>>()
                            .join("/"),
                    );
                }
            }
        }
        // SAFETY: `g` was filled by glob (or is zeroed), globfree accepts both.
        unsafe { libc::globfree(&mut g) };
        found
    }

    /// Turns one byte of a key into a pattern piece, by `op`; most pieces
    /// match the byte, some do not, so patterns often match some keys.
    fn piece(op: u8, c: char) -> String {
        let other = if c == 'a' { 'b' } else { 'a' };
        match op % 14 {
            0..=3 => c.to_string(),
            4 => "?".into(),
            5 => "*".into(),
            6 => format!("[{c}]"),
            7 => format!("[!{other}]"),
            8 => format!("[^{c}]"),
            9 => format!("[{other}-{c}]"),
            10 => format!("\\{c}"),
            11 => format!("{{{c},{other}}}"),
            12 => "[[:alpha:]]".into(),
            _ => format!("[]{c}]"),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]

        /// Our matcher selects exactly what glob(3) (GLOB_BRACE, C locale)
        /// finds among existing keys.
        #[test]
        fn agrees_with_glob3(
            names in proptest::collection::btree_set((name(), name()), 1..8),
            pattern in (pattern_component(), pattern_component()),
        ) {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut keys = std::collections::BTreeSet::new();
            for (a, b) in &names {
                if [a, b].iter().any(|c| c.is_empty() || *c == "." || *c == "..") {
                    continue;
                }
                let parent = dir.path().join(a);
                if std::fs::create_dir_all(&parent).is_err() || std::fs::write(parent.join(b), "").is_err() {
                    continue;
                }
                keys.insert(format!("{a}/{b}"));
            }
            // Every directory is a key candidate too (glob(3) lists them).
            let dirs: std::collections::BTreeSet<String> =
                keys.iter().filter_map(|k| k.split_once('/').map(|(a, _)| a.to_string())).collect();
            let pattern = format!("{}/{}", pattern.0, pattern.1);
            prop_assume!(!pattern.starts_with('/') && !pattern.contains("//"));
            let expected = glob_reference(dir.path(), &pattern);
            let ours: std::collections::BTreeSet<String> = keys
                .iter()
                .chain(&dirs)
                .filter(|k| matches(&pattern, k))
                .cloned()
                .collect();
            prop_assert_eq!(ours, expected, "pattern {:?} over {:?}", pattern, keys);
        }

        /// The same, with patterns derived from one of the keys (so that
        /// they match often and the sets, negations and braces decide).
        #[test]
        fn agrees_with_glob3_on_derived_patterns(
            names in proptest::collection::btree_set(("[abc_]{1,4}", "[abc_.^!\\]-]{1,4}"), 1..8),
            pick in any::<proptest::sample::Index>(),
            ops in proptest::collection::vec(any::<u8>(), 8),
        ) {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut keys = std::collections::BTreeSet::new();
            for (a, b) in &names {
                if b == "." || b == ".." {
                    continue;
                }
                let parent = dir.path().join(a);
                std::fs::create_dir_all(&parent).expect("mkdir");
                std::fs::write(parent.join(b), "").expect("write");
                keys.insert(format!("{a}/{b}"));
            }
            prop_assume!(!keys.is_empty());
            let key = pick.get(&keys.iter().collect::<Vec<_>>()).to_string();
            let pattern: String = key
                .chars()
                .enumerate()
                .map(|(i, c)| if c == '/' { "/".to_string() } else { piece(ops[i % ops.len()].wrapping_add(i as u8), c) })
                .collect();
            let expected = glob_reference(dir.path(), &pattern);
            let ours: std::collections::BTreeSet<String> =
                keys.iter().filter(|k| matches(&pattern, k)).cloned().collect();
            prop_assert_eq!(ours, expected, "pattern {:?} over {:?}", pattern, keys);
        }
    }
}
