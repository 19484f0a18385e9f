//! Text that keeps bytes which are not UTF-8 (pure logic).
//!
//! Configuration files may hold, in comments, bytes of another encoding
//! (a Latin-1 `é` is the byte `0xE9`). nfkit works on `String`s; so that
//! rewriting such a file keeps those bytes exactly, [`decode`] maps every
//! byte that is not part of valid UTF-8 to one private-use character
//! (`U+10FF00 + byte`, the range `U+10FF80..=U+10FFFF`), and [`encode`]
//! maps them back. A file that already holds one of these characters as
//! UTF-8 has its four bytes escaped one by one, so `encode(decode(b)) == b`
//! for every byte string `b`.

use std::borrow::Cow;

const BASE: u32 = 0x10_FF00;

/// Whether `c` stands for a byte that was not UTF-8.
pub fn is_escape(c: char) -> bool {
    (BASE + 0x80..=BASE + 0xFF).contains(&(c as u32))
}

fn escape(b: u8) -> char {
    char::from_u32(BASE + u32::from(b)).expect("U+10FF80..U+10FFFF are chars")
}

/// Bytes to text; bytes that are not UTF-8 become escapes.
pub fn decode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if is_escape(c) {
                let mut buf = [0u8; 4];
                out.extend(c.encode_utf8(&mut buf).bytes().map(escape));
            } else {
                out.push(c);
            }
        }
        // Invalid sequences never hold ASCII bytes: each is >= 0x80.
        out.extend(chunk.invalid().iter().map(|&b| escape(b)));
    }
    out
}

/// Text to bytes; escapes become the bytes they stand for.
pub fn encode(text: &str) -> Cow<'_, [u8]> {
    if !text.chars().any(is_escape) {
        return Cow::Borrowed(text.as_bytes());
    }
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        if is_escape(c) {
            out.push((c as u32 - BASE) as u8);
        } else {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
    Cow::Owned(out)
}

/// The first line (1-based) holding an escape that is not a comment line
/// (first non-blank character `#` or `;`), if any.
pub fn first_escape_outside_comment(text: &str) -> Option<usize> {
    text.split('\n')
        .position(|line| {
            let body = line.trim_start_matches([' ', '\t']);
            !(body.starts_with('#') || body.starts_with(';')) && line.chars().any(is_escape)
        })
        .map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn latin1_comment_round_trips_and_is_found_outside_comments() {
        let bytes = b"# caf\xe9\nnet.x = 1\r\n  ; \xff\xfe\n";
        let text = decode(bytes);
        assert_eq!(encode(&text).as_ref(), bytes);
        assert_eq!(first_escape_outside_comment(&text), None);
        let bad = decode(b"# ok\nnet.x = \xe9\n");
        assert_eq!(first_escape_outside_comment(&bad), Some(2));
        // A real U+10FFFF in the file is escaped byte by byte, and round-trips.
        let real = "# \u{10FFFF}\n".as_bytes();
        assert_eq!(encode(&decode(real)).as_ref(), real);
        assert_eq!(decode(real).chars().filter(|&c| is_escape(c)).count(), 4);
    }

    proptest! {
        #[test]
        fn decode_then_encode_gives_back_the_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let text = decode(&bytes);
            prop_assert_eq!(encode(&text).into_owned(), bytes);
        }

        #[test]
        fn valid_utf8_without_escapes_is_unchanged(s in "\\PC*") {
            prop_assume!(!s.chars().any(is_escape));
            prop_assert_eq!(decode(s.as_bytes()), s.clone());
        }
    }
}
