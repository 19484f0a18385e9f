//! Keeping a file's line endings when nfkit edits it (pure).
//!
//! Editors work on LF text; [`edit_keeping_endings`] runs one on the file
//! with every CRLF read as LF, then puts the result back so that the bytes
//! the edit did not change come from the original file (CRLF, LF, or a mix
//! stay as they were) and the lines it wrote end as the file's lines mostly
//! do. A `\r` that is not before `\n` is ordinary text.

/// The file's line ending: CRLF when most of its lines end so (a tie is
/// LF).
pub fn dominant(text: &str) -> &'static str {
    let lines = text.matches('\n').count();
    let crlf = text.matches("\r\n").count();
    if crlf * 2 > lines { "\r\n" } else { "\n" }
}

/// `text` with every CRLF read as LF, and for each byte of that view (plus
/// its end) the offset in `text` where the byte's unit starts (the `\r` of a
/// CRLF). A `\r` not before `\n` stays as it is.
pub fn lf_view(text: &str) -> (String, Vec<usize>) {
    let mut lf = String::with_capacity(text.len());
    let mut at = Vec::with_capacity(text.len() + 1);
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\r' && bytes.get(i + 1) == Some(&b'\n') {
            at.push(i);
            lf.push('\n');
            i += 2;
            continue;
        }
        let c = text[i..].chars().next().expect("i is a char boundary");
        at.extend(std::iter::repeat_n(i, c.len_utf8()));
        lf.push(c);
        i += c.len_utf8();
    }
    at.push(text.len());
    (lf, at)
}

/// Writes LF text `lf` with `ending` for its line ends, so that reading the
/// result with CRLF as LF gives back `lf`: a `\n` after a `\r` is written
/// as CRLF whatever `ending` is (a bare `\n` there would turn that `\r`
/// into part of a line end); `out` holds what comes before `lf`.
fn write_lf(out: &mut String, lf: &str, ending: &str) {
    for c in lf.chars() {
        if c == '\n' && (ending == "\r\n" || out.ends_with('\r')) {
            out.push_str("\r\n");
        } else {
            out.push(c);
        }
    }
}

/// Runs `edit` on `text` with CRLF read as LF; see the module docs.
///
/// The editor must read its LF text with `\r` as ordinary text (the view
/// has no CRLF left but those of `\r\r\n` in the file, where the first
/// `\r` is text). The result, read with CRLF as LF, is always exactly the
/// edit's result.
pub fn edit_keeping_endings<E>(
    text: &str,
    edit: impl FnOnce(&str) -> Result<String, E>,
) -> Result<String, E> {
    let (lf, at) = lf_view(text);
    let after = edit(&lf)?;
    if after == lf {
        return Ok(text.to_string());
    }
    let (old, new) = (lf.as_bytes(), after.as_bytes());
    let mut prefix = old.iter().zip(new).take_while(|(a, b)| a == b).count();
    while !lf.is_char_boundary(prefix) {
        prefix -= 1;
    }
    let max_suffix = old.len().min(new.len()) - prefix;
    let mut suffix = old
        .iter()
        .rev()
        .zip(new.iter().rev())
        .take(max_suffix)
        .take_while(|(a, b)| a == b)
        .count();
    while !lf.is_char_boundary(old.len() - suffix) {
        suffix -= 1;
    }
    let middle = &after[prefix..after.len() - suffix];
    let ending = dominant(text);
    let mut out = String::with_capacity(text.len() + middle.len() * 2);
    out.push_str(&text[..at[prefix]]);
    write_lf(&mut out, middle, ending);
    out.push_str(&text[at[old.len() - suffix]..]);
    if lf_view(&out).0 == after {
        return Ok(out);
    }
    // The kept tail starts with a bare `\n` right after a written `\r`
    // (or the like): write the whole result in the file's ending instead.
    let mut whole = String::with_capacity(after.len() * 2);
    write_lf(&mut whole, &after, ending);
    Ok(whole)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn replace(text: &str, from: &str, to: &str) -> Result<String, ()> {
        Ok(text.replacen(from, to, 1))
    }

    #[test]
    fn crlf_files_stay_crlf_and_lf_files_are_untouched() {
        let crlf = "# c\r\nA=\"x\"\r\nB=1\r\n";
        let out = edit_keeping_endings(crlf, |t| replace(t, "\"x\"", "\"x\ny\"")).unwrap();
        assert_eq!(out, "# c\r\nA=\"x\r\ny\"\r\nB=1\r\n");
        let lf = "A=1\n";
        assert_eq!(
            edit_keeping_endings(lf, |t| replace(t, "1", "2")).unwrap(),
            "A=2\n"
        );
        // Appending a line to a CRLF file: CRLF; a mixed file keeps its mix.
        let out = edit_keeping_endings("A=1\r\n", |t| Ok::<_, ()>(format!("{t}B=2\n"))).unwrap();
        assert_eq!(out, "A=1\r\nB=2\r\n");
        let mixed = "A=1\r\nB=2\nC=3\r\nD=4\r\n";
        let out = edit_keeping_endings(mixed, |t| replace(t, "C=3", "C=4")).unwrap();
        assert_eq!(out, "A=1\r\nB=2\nC=4\r\nD=4\r\n");
        // A lone `\r` is text.
        let out = edit_keeping_endings("A=\r1\r\n", |t| replace(t, "1", "2")).unwrap();
        assert_eq!(out, "A=\r2\r\n");
    }

    proptest! {
        /// Whatever the edit, the bytes before and after the changed part
        /// are the original's, and reading the result as LF gives the
        /// edit's result.
        #[test]
        fn unchanged_bytes_are_kept_and_the_lf_view_is_the_edit(
            lines in proptest::collection::vec(("[a-c\r]{0,4}", prop::bool::ANY), 0..8),
            from in "[a-c\r]{1,2}",
            to in "[a-c\r\n]{0,4}",
        ) {
            let text: String = lines
                .iter()
                .map(|(l, crlf)| format!("{l}{}", if *crlf { "\r\n" } else { "\n" }))
                .collect();
            let out = edit_keeping_endings(&text, |t| replace(t, &from, &to)).unwrap();
            let lf_out = out.replace("\r\n", "\n");
            let expected = text.replace("\r\n", "\n").replacen(&from, &to, 1);
            prop_assert_eq!(lf_out, expected);
            if !text.replace("\r\n", "\n").contains(&from) {
                prop_assert_eq!(out, text);
            }
        }
    }
}
