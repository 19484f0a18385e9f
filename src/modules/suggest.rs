//! "Did you mean" for names that resolve to nothing (pure).

/// Levenshtein distance over bytes (module names are ASCII), with `-` and
/// `_` equal and case-insensitive, so `IPT_LOG` ≈ `ipt_LOG`.
pub fn distance(a: &str, b: &str) -> usize {
    let norm = |c: u8| {
        if c == b'-' {
            b'_'
        } else {
            c.to_ascii_lowercase()
        }
    };
    let a: Vec<u8> = a.bytes().map(norm).collect();
    let b: Vec<u8> = b.bytes().map(norm).collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// Up to `n` candidates closest to `name`, closest first (ties by name),
/// within a distance of a third of the name's length (at least 2).
pub fn closest<'a, I>(name: &str, candidates: I, n: usize) -> Vec<String>
where
    I: IntoIterator<Item = &'a str>,
{
    let max = (name.len() / 3).max(2);
    let mut scored: Vec<(usize, &str)> = candidates
        .into_iter()
        .map(|c| (distance(name, c), c))
        .filter(|(d, _)| *d <= max)
        .collect();
    scored.sort_unstable();
    scored.dedup_by(|a, b| a.1 == b.1);
    scored
        .into_iter()
        .take(n)
        .map(|(_, c)| c.to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(distance("xt_multipor", "xt_multiport"), 1);
        assert_eq!(distance("nf-conntrack", "nf_conntrack"), 0);
        assert_eq!(distance("IPT_LOG", "ipt_LOG"), 0);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("kitten", "sitting"), 3);
    }

    #[test]
    fn closest_names() {
        let c = [
            "xt_multiport",
            "xt_mark",
            "nf_conntrack",
            "nf_conntrack_ftp",
            "xt_limit",
        ];
        assert_eq!(closest("xt_multipor", c, 3), vec!["xt_multiport"]);
        assert_eq!(closest("nf_contrack", c, 3), vec!["nf_conntrack"]);
        assert!(closest("zzzzzz", c, 3).is_empty());
        assert_eq!(closest("xt_mar", c, 1), vec!["xt_mark"]);
    }
}
