//! Unified diffs of text files (pure), for `apply --diff`.

/// One edit of a line diff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Edit {
    Keep(usize, usize),
    Delete(usize),
    Insert(usize),
}

/// Longest-common-subsequence line diff (config files are small).
fn edits(a: &[&str], b: &[&str]) -> Vec<Edit> {
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            out.push(Edit::Keep(i, j));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push(Edit::Delete(i));
            i += 1;
        } else {
            out.push(Edit::Insert(j));
            j += 1;
        }
    }
    out
}

/// A unified diff (`--- a`, `+++ b`, `@@` hunks with 3 lines of context);
/// empty when the texts are equal. `None` stands for a missing file.
pub fn unified(path: &str, before: Option<&str>, after: Option<&str>) -> String {
    if before == after {
        return String::new();
    }
    let a: Vec<&str> = before.map(|t| t.lines().collect()).unwrap_or_default();
    let b: Vec<&str> = after.map(|t| t.lines().collect()).unwrap_or_default();
    let script = edits(&a, &b);
    const CONTEXT: usize = 3;
    let changed: Vec<usize> = script
        .iter()
        .enumerate()
        .filter(|(_, e)| !matches!(e, Edit::Keep(..)))
        .map(|(k, _)| k)
        .collect();
    let mut out = format!(
        "--- {}\n+++ {}\n",
        if before.is_some() {
            format!("a{path}")
        } else {
            "/dev/null".into()
        },
        if after.is_some() {
            format!("b{path}")
        } else {
            "/dev/null".into()
        }
    );
    if changed.is_empty() {
        // Only a difference in the final newline.
        out.push_str("@@ (end of file: newline differs) @@\n");
        return out;
    }
    // Group changes into hunks separated by more than 2×CONTEXT kept lines.
    let mut hunks: Vec<(usize, usize)> = Vec::new();
    for &k in &changed {
        let start = k.saturating_sub(CONTEXT);
        let end = (k + CONTEXT + 1).min(script.len());
        match hunks.last_mut() {
            Some(last) if start <= last.1 => last.1 = end,
            _ => hunks.push((start, end)),
        }
    }
    for (start, end) in hunks {
        let slice = &script[start..end];
        let a_start = slice.iter().find_map(|e| match e {
            Edit::Keep(i, _) | Edit::Delete(i) => Some(*i),
            Edit::Insert(_) => None,
        });
        let b_start = slice.iter().find_map(|e| match e {
            Edit::Keep(_, j) | Edit::Insert(j) => Some(*j),
            Edit::Delete(_) => None,
        });
        let a_len = slice
            .iter()
            .filter(|e| !matches!(e, Edit::Insert(_)))
            .count();
        let b_len = slice
            .iter()
            .filter(|e| !matches!(e, Edit::Delete(_)))
            .count();
        let a_pos = if a_len == 0 {
            a_start.unwrap_or(0)
        } else {
            a_start.unwrap_or(0) + 1
        };
        let b_pos = if b_len == 0 {
            b_start.unwrap_or(0)
        } else {
            b_start.unwrap_or(0) + 1
        };
        out.push_str(&format!("@@ -{a_pos},{a_len} +{b_pos},{b_len} @@\n"));
        for e in slice {
            match e {
                Edit::Keep(i, _) => out.push_str(&format!(" {}\n", a[*i])),
                Edit::Delete(i) => out.push_str(&format!("-{}\n", a[*i])),
                Edit::Insert(j) => out.push_str(&format!("+{}\n", b[*j])),
            }
        }
    }
    shown_bytes(out)
}

/// Bytes of a file that are not UTF-8 (kept in comments, see
/// [`crate::lossless`]) shown as `\xNN`.
fn shown_bytes(text: String) -> String {
    if !text.chars().any(crate::lossless::is_escape) {
        return text;
    }
    text.chars()
        .map(
            |c| match crate::lossless::encode(c.encode_utf8(&mut [0; 4])).as_ref() {
                [b] if crate::lossless::is_escape(c) => format!("\\x{b:02x}"),
                _ => c.to_string(),
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_that_are_not_utf8_are_shown_escaped() {
        let before = crate::lossless::decode(b"# caf\xe9\nk = 1\n");
        let after = before.replace("k = 1", "k = 2");
        let diff = unified("/x", Some(&before), Some(&after));
        assert!(diff.contains(" # caf\\xe9\n"), "{diff}");
    }

    #[test]
    fn equal_texts_have_no_diff() {
        assert_eq!(unified("/x", Some("a\n"), Some("a\n")), "");
        assert_eq!(unified("/x", None, None), "");
    }

    #[test]
    fn new_file_and_change() {
        assert_eq!(
            unified("/etc/x", None, Some("a\nb\n")),
            "--- /dev/null\n+++ b/etc/x\n@@ -0,0 +1,2 @@\n+a\n+b\n"
        );
        let before = "1\n2\n3\n4\n5\n6\n7\n8\n9\n";
        let after = "1\n2\n3\n4\nfive\n6\n7\n8\n9\n";
        assert_eq!(
            unified("/f", Some(before), Some(after)),
            "--- a/f\n+++ b/f\n@@ -2,7 +2,7 @@\n 2\n 3\n 4\n-5\n+five\n 6\n 7\n 8\n"
        );
    }

    #[test]
    fn distant_changes_make_two_hunks() {
        let before: String = (1..=20).map(|i| format!("{i}\n")).collect();
        let after = before.replace("2\n", "two\n").replace("19\n", "nineteen\n");
        let d = unified("/f", Some(&before), Some(&after));
        assert_eq!(d.matches("@@ -").count(), 2, "{d}");
    }
}
