//! Validation of conntrack limits before anything is written (pure).
//!
//! Kernel facts (`conntrack-and-tables.md` §3.3, Linux 6.18):
//! - `nf_conntrack_max` is `proc_dointvec_minmax` over 0..=INT_MAX; `0` means
//!   "no limit" on current kernels (newer kernels reject it).
//! - `nf_conntrack_buckets` (= module parameter `hashsize`) is rounded up to
//!   a multiple of 512 (PAGE_SIZE / sizeof(hlist_nulls_head)); 0 is EINVAL
//!   and a table of 2^28 or more buckets exceeds the kernel's allocation
//!   limit (ENOMEM).
//! - The kernel trims surrounding white space (`" 12 "` is 12); nfkit does
//!   the same, and rejects signs, empty strings and anything else.

use std::fmt;

/// Largest value `nf_conntrack_max` accepts (`INT_MAX`).
pub const MAX_LIMIT: u32 = i32::MAX as u32;
/// Buckets are allocated in multiples of this many.
pub const BUCKET_GRANULE: u32 = 512;
/// Largest bucket count the kernel can allocate (below 2^28 after rounding).
pub const MAX_BUCKETS: u32 = (1 << 28) - BUCKET_GRANULE;

/// Which limit a value is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `net.netfilter.nf_conntrack_max`.
    Max,
    /// `net.netfilter.nf_conntrack_buckets` (module parameter `hashsize`).
    Buckets,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Limit::Max => "conntrack max",
            Limit::Buckets => "conntrack buckets",
        })
    }
}

/// Why a limit value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// Not a plain decimal number.
    #[error("invalid {limit} {input:?}: not a decimal number")]
    NotANumber { limit: Limit, input: String },
    /// Negative values are never valid.
    #[error("invalid {limit} {input:?}: must not be negative")]
    Negative { limit: Limit, input: String },
    /// Above what the kernel accepts.
    #[error("invalid {limit} {input}: larger than the kernel accepts ({max})")]
    TooLarge {
        limit: Limit,
        input: String,
        max: u32,
    },
    /// `0` for max without `--allow-unlimited`.
    #[error("conntrack max 0 would remove the limit entirely")]
    UnlimitedNotAllowed,
    /// `0` buckets.
    #[error("invalid conntrack buckets 0: the table needs at least one bucket")]
    ZeroBuckets,
}

impl crate::error::Hint for LimitError {
    /// A hint for the user.
    fn hint(&self) -> Option<std::borrow::Cow<'static, str>> {
        match self {
            LimitError::UnlimitedNotAllowed => Some(
                "pass --allow-unlimited if no limit is really wanted \
                 (kernels from 6.19 on refuse 0)",
            ),
            LimitError::TooLarge {
                limit: Limit::Buckets,
                ..
            } => Some(
                "the bucket array is 8 bytes per bucket and must stay below \
                 2 GiB",
            ),
            _ => None,
        }
        .map(std::borrow::Cow::Borrowed)
    }
}

fn parse_decimal(limit: Limit, input: &str, max: u32) -> Result<u32, LimitError> {
    let trimmed = input.trim();
    if let Some(rest) = trimmed.strip_prefix('-')
        && !rest.is_empty()
        && rest.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(LimitError::Negative {
            limit,
            input: input.to_string(),
        });
    }
    if trimmed.is_empty() || !trimmed.bytes().all(|b| b.is_ascii_digit()) {
        return Err(LimitError::NotANumber {
            limit,
            input: input.to_string(),
        });
    }
    let too_large = || LimitError::TooLarge {
        limit,
        input: trimmed.to_string(),
        max,
    };
    let value: u64 = trimmed.parse().map_err(|_| too_large())?;
    match u32::try_from(value) {
        Ok(v) if v <= max => Ok(v),
        _ => Err(too_large()),
    }
}

/// Parses a `nf_conntrack_max` value: 1..=2^31-1, or 0 when
/// `allow_unlimited`.
pub fn parse_max(input: &str, allow_unlimited: bool) -> Result<u32, LimitError> {
    let value = parse_decimal(Limit::Max, input, MAX_LIMIT)?;
    if value == 0 && !allow_unlimited {
        return Err(LimitError::UnlimitedNotAllowed);
    }
    Ok(value)
}

/// Parses a bucket count: 1..=[`MAX_BUCKETS`].
pub fn parse_buckets(input: &str) -> Result<u32, LimitError> {
    let value = parse_decimal(Limit::Buckets, input, MAX_BUCKETS)?;
    if value == 0 {
        return Err(LimitError::ZeroBuckets);
    }
    Ok(value)
}

/// The bucket count the kernel will actually allocate for `requested`.
pub fn effective_buckets(requested: u32) -> u32 {
    requested.div_ceil(BUCKET_GRANULE) * BUCKET_GRANULE
}

/// Memory the table may use at its maximum: `max` entries of `entry_size`
/// bytes plus the bucket array (one pointer-sized head per bucket).
pub fn memory_estimate(max: u32, buckets: u32, entry_size: u32) -> u64 {
    u64::from(max) * u64::from(entry_size) + u64::from(buckets) * 8
}

/// Maps a setting name to the limit it sets. Accepts the short names
/// (`max`, `buckets`, `hashsize`), the sysctl keys in dotted or slashed form,
/// and the legacy `net.nf_conntrack_max` from 2.6-era guides (the same kernel
/// variable as `net.netfilter.nf_conntrack_max`).
pub fn limit_for_key(key: &str) -> Option<Limit> {
    let normalised = key.trim().replace('/', ".");
    match normalised.trim_start_matches('.') {
        "max" | "nf_conntrack_max" | "net.netfilter.nf_conntrack_max" | "net.nf_conntrack_max" => {
            Some(Limit::Max)
        }
        "buckets" | "hashsize" | "nf_conntrack_buckets" | "net.netfilter.nf_conntrack_buckets" => {
            Some(Limit::Buckets)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_accepts_kernel_range() {
        assert_eq!(parse_max("1", false), Ok(1));
        assert_eq!(parse_max("2147483647", false), Ok(i32::MAX as u32));
        assert_eq!(parse_max(" 12 ", false), Ok(12));
        assert_eq!(parse_max("\t500000\n", false), Ok(500_000));
    }

    #[test]
    fn max_rejects_what_the_kernel_rejects() {
        assert!(matches!(
            parse_max("-1", false),
            Err(LimitError::Negative { .. })
        ));
        assert!(matches!(
            parse_max("2147483648", false),
            Err(LimitError::TooLarge { .. })
        ));
        assert!(matches!(
            parse_max("99999999999999999999999", false),
            Err(LimitError::TooLarge { .. })
        ));
        for bad in ["abc", "", " ", "+5", "1e6", "0x10", "12 34", "-", "1_000"] {
            assert!(
                matches!(parse_max(bad, false), Err(LimitError::NotANumber { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn zero_max_needs_explicit_permission() {
        assert_eq!(parse_max("0", false), Err(LimitError::UnlimitedNotAllowed));
        assert_eq!(parse_max("0", true), Ok(0));
        assert!(
            crate::error::hint(&LimitError::UnlimitedNotAllowed)
                .unwrap()
                .contains("--allow-unlimited")
        );
    }

    #[test]
    fn buckets_validation_and_rounding() {
        assert_eq!(parse_buckets("0"), Err(LimitError::ZeroBuckets));
        assert_eq!(parse_buckets("1"), Ok(1));
        assert!(matches!(
            parse_buckets("268435456"),
            Err(LimitError::TooLarge { .. })
        ));
        assert!(matches!(
            parse_buckets("-1"),
            Err(LimitError::Negative { .. })
        ));
        assert_eq!(parse_buckets(&MAX_BUCKETS.to_string()), Ok(MAX_BUCKETS));
        assert_eq!(effective_buckets(1), 512);
        assert_eq!(effective_buckets(1000), 1024);
        assert_eq!(effective_buckets(1024), 1024);
        assert_eq!(effective_buckets(262_144), 262_144);
        assert_eq!(effective_buckets(MAX_BUCKETS), MAX_BUCKETS);
    }

    #[test]
    fn setting_names_and_legacy_alias() {
        assert_eq!(limit_for_key("net.nf_conntrack_max"), Some(Limit::Max));
        assert_eq!(
            limit_for_key("net.netfilter.nf_conntrack_max"),
            Some(Limit::Max)
        );
        assert_eq!(
            limit_for_key("net/netfilter/nf_conntrack_max"),
            Some(Limit::Max)
        );
        assert_eq!(limit_for_key("max"), Some(Limit::Max));
        assert_eq!(limit_for_key("hashsize"), Some(Limit::Buckets));
        assert_eq!(
            limit_for_key("net.netfilter.nf_conntrack_buckets"),
            Some(Limit::Buckets)
        );
        assert_eq!(limit_for_key("net.netfilter.nf_conntrack_count"), None);
        assert_eq!(limit_for_key("net.ipv4.ip_forward"), None);
    }

    #[test]
    fn memory_estimate_counts_entries_and_buckets() {
        assert_eq!(
            memory_estimate(262_144, 262_144, 320),
            262_144 * 320 + 262_144 * 8
        );
        assert_eq!(memory_estimate(0, 0, 320), 0);
    }
}
