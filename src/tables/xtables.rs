//! Legacy xtables (iptables / ip6tables / arptables) chains of an existing
//! table, read the way libiptc does: `*_SO_GET_INFO` then
//! `*_SO_GET_ENTRIES` on a raw socket (needs CAP_NET_ADMIN).
//!
//! The codec ([`parse_info`], [`parse_chains`]) is pure; [`read_chains`] does
//! the two `getsockopt(2)` calls. Structure layouts (x86_64 and every
//! 64-bit Linux ABI; `linux/netfilter_ipv4/ip_tables.h`, `..._ipv6/ip6_tables.h`,
//! `linux/netfilter_arp/arp_tables.h`):
//!
//! | | ipv4 | ipv6 | arp |
//! |---|---|---|---|
//! | `*_getinfo` size / hooks | 84 / 5 | 84 / 5 | 68 / 3 |
//! | entry header size | 112 | 168 | 192 |
//! | `target_offset` at | 88 | 140 | 164 |
//! | `next_offset` at | 90 | 142 | 166 |
//!
//! A target starts with `xt_entry_target` (32 bytes: size u16, name[29],
//! revision u8); the standard target (name "") carries an `int` verdict, the
//! ERROR target a 30-byte chain name. User chains start with an ERROR entry
//! named after the chain and end with a RETURN entry; the table ends with an
//! ERROR entry named "ERROR". Built-in chains run from `hook_entry[h]` to
//! their policy entry at `underflow[h]`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use serde::Serialize;

use super::names::XtFamily;

/// Size of `xt_entry_target`'s header.
const TARGET_HEADER: usize = 32;
/// `XT_TABLE_MAXNAMELEN`.
const TABLE_NAME_LEN: usize = 32;
/// `sizeof(struct ipt_get_entries)` header (name + size, 8-byte aligned).
const GET_ENTRIES_HEADER: usize = 40;

/// Layout constants of one family.
#[derive(Debug, Clone, Copy)]
struct Layout {
    info_size: usize,
    hooks: usize,
    entry_size: usize,
    target_offset_at: usize,
    next_offset_at: usize,
    hook_names: &'static [&'static str],
    /// (level, GET_INFO, GET_ENTRIES, socket family)
    sockopt: (libc::c_int, libc::c_int, libc::c_int, libc::c_int),
}

const IPV4: Layout = Layout {
    info_size: 84,
    hooks: 5,
    entry_size: 112,
    target_offset_at: 88,
    next_offset_at: 90,
    hook_names: &["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"],
    sockopt: (libc::SOL_IP, 64, 65, libc::AF_INET),
};
const IPV6: Layout = Layout {
    info_size: 84,
    hooks: 5,
    entry_size: 168,
    target_offset_at: 140,
    next_offset_at: 142,
    hook_names: &["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"],
    sockopt: (libc::SOL_IPV6, 64, 65, libc::AF_INET6),
};
const ARP: Layout = Layout {
    info_size: 68,
    hooks: 3,
    entry_size: 192,
    target_offset_at: 164,
    next_offset_at: 166,
    hook_names: &["INPUT", "OUTPUT", "FORWARD"],
    sockopt: (libc::SOL_IP, 96, 97, libc::AF_INET),
};

fn layout(family: XtFamily) -> Layout {
    match family {
        XtFamily::Ipv4 => IPV4,
        XtFamily::Ipv6 => IPV6,
        XtFamily::Arp => ARP,
    }
}

/// `struct ipt_getinfo` (and the ip6/arp equivalents), decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInfo {
    /// Table name.
    pub name: String,
    /// Bit per hook with a built-in chain.
    pub valid_hooks: u32,
    /// Offset of each hook's first entry.
    pub hook_entry: Vec<u32>,
    /// Offset of each hook's policy entry.
    pub underflow: Vec<u32>,
    /// Number of entries.
    pub num_entries: u32,
    /// Size of the entry table in bytes.
    pub size: u32,
}

/// One chain of a legacy table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct XtChain {
    /// Chain name.
    pub name: String,
    /// Built-in (hooked) chain or user-defined.
    pub builtin: bool,
    /// Policy of a built-in chain (`ACCEPT`, `DROP`, ...).
    pub policy: Option<String>,
    /// Number of rules (policy and chain-end entries not counted).
    pub rules: usize,
}

/// Decoding errors; the blob came from the kernel, so these mean an ABI
/// mismatch or a table that changed between the two calls.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {family} table data: {detail}")]
pub struct CodecError {
    /// Family name.
    pub family: &'static str,
    /// What is wrong.
    pub detail: String,
}

fn u32_at(buf: &[u8], at: usize) -> Option<u32> {
    buf.get(at..at + 4)
        .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

fn u16_at(buf: &[u8], at: usize) -> Option<u16> {
    buf.get(at..at + 2)
        .map(|b| u16::from_ne_bytes([b[0], b[1]]))
}

fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// Decodes a `*_getinfo` structure.
pub fn parse_info(family: XtFamily, buf: &[u8]) -> Result<TableInfo, CodecError> {
    let l = layout(family);
    let err = |detail: String| CodecError {
        family: family.name(),
        detail,
    };
    if buf.len() < l.info_size {
        return Err(err(format!(
            "getinfo is {} bytes, expected {}",
            buf.len(),
            l.info_size
        )));
    }
    let word = |i: usize| u32_at(buf, TABLE_NAME_LEN + 4 * i).unwrap_or(0);
    Ok(TableInfo {
        name: c_string(&buf[..TABLE_NAME_LEN]),
        valid_hooks: word(0),
        hook_entry: (0..l.hooks).map(|h| word(1 + h)).collect(),
        underflow: (0..l.hooks).map(|h| word(1 + l.hooks + h)).collect(),
        num_entries: word(1 + 2 * l.hooks),
        size: word(2 + 2 * l.hooks),
    })
}

/// Encodes a `*_getinfo` structure (for tests and fixtures).
pub fn encode_info(family: XtFamily, info: &TableInfo) -> Vec<u8> {
    let l = layout(family);
    let mut buf = vec![0u8; l.info_size];
    let name = info.name.as_bytes();
    let n = name.len().min(TABLE_NAME_LEN - 1);
    buf[..n].copy_from_slice(&name[..n]);
    let mut words = vec![info.valid_hooks];
    words.extend(&info.hook_entry);
    words.extend(&info.underflow);
    words.push(info.num_entries);
    words.push(info.size);
    for (i, w) in words.iter().enumerate() {
        let at = TABLE_NAME_LEN + 4 * i;
        buf[at..at + 4].copy_from_slice(&w.to_ne_bytes());
    }
    buf
}

#[derive(Debug)]
struct Entry {
    offset: usize,
    target: String,
    /// Standard target verdict, or None.
    verdict: Option<i32>,
    /// ERROR target's chain name.
    error_name: Option<String>,
    /// `CT` target's helper (`xt_ct_target_info*.helper`, all revisions).
    ct_helper: Option<String>,
}

fn verdict_name(verdict: i32) -> String {
    // Standard verdicts are stored as -NF_x - 1.
    match verdict {
        -1 => "DROP".into(),
        -2 => "ACCEPT".into(),
        -4 => "QUEUE".into(),
        -5 => "RETURN".into(),
        v => format!("verdict {v}"),
    }
}

fn split_entries(family: XtFamily, entries: &[u8]) -> Result<Vec<Entry>, CodecError> {
    let l = layout(family);
    let err = |detail: String| CodecError {
        family: family.name(),
        detail,
    };
    let mut out = Vec::new();
    let mut offset = 0usize;
    while offset < entries.len() {
        let target_offset = u16_at(entries, offset + l.target_offset_at)
            .ok_or_else(|| err(format!("entry at {offset} is truncated")))?
            as usize;
        let next_offset = u16_at(entries, offset + l.next_offset_at)
            .ok_or_else(|| err(format!("entry at {offset} is truncated")))?
            as usize;
        if target_offset < l.entry_size
            || next_offset < target_offset + TARGET_HEADER
            || offset + next_offset > entries.len()
        {
            return Err(err(format!(
                "entry at {offset}: target_offset {target_offset}, next_offset {next_offset} \
                 inconsistent with a {}-byte table",
                entries.len()
            )));
        }
        let target = &entries[offset + target_offset..offset + next_offset];
        let name = c_string(&target[2..2 + 29]);
        let data = &target[TARGET_HEADER..];
        let (verdict, error_name) = match name.as_str() {
            "" => (u32_at(data, 0).map(|v| v as i32), None),
            "ERROR" => (None, Some(c_string(&data[..data.len().min(30)]))),
            _ => (None, None),
        };
        let ct_helper = (name == "CT")
            .then(|| data.get(CT_HELPER_AT..CT_HELPER_AT + 16).map(c_string))
            .flatten()
            .filter(|h| !h.is_empty());
        out.push(Entry {
            offset,
            target: name,
            verdict,
            error_name,
            ct_helper,
        });
        offset += next_offset;
    }
    Ok(out)
}

/// Offset of `helper[16]` in every `xt_ct_target_info` revision (after
/// `u16 flags, u16 zone, u32 ct_events, u32 exp_events`).
pub(crate) const CT_HELPER_AT: usize = 12;

/// The helpers of a table's `CT --helper NAME` rules, from its entry blob.
pub fn ct_helpers(family: XtFamily, entries: &[u8]) -> Result<Vec<String>, CodecError> {
    Ok(split_entries(family, entries)?
        .into_iter()
        .filter_map(|e| e.ct_helper)
        .collect())
}

/// Lists the chains of a table from its info and entry blob.
pub fn parse_chains(
    family: XtFamily,
    info: &TableInfo,
    entries: &[u8],
) -> Result<Vec<XtChain>, CodecError> {
    let l = layout(family);
    let err = |detail: String| CodecError {
        family: family.name(),
        detail,
    };
    let list = split_entries(family, entries)?;
    if list.len() != info.num_entries as usize {
        return Err(err(format!(
            "{} entries found, getinfo said {}",
            list.len(),
            info.num_entries
        )));
    }
    let index_of = |offset: u32| list.iter().position(|e| e.offset == offset as usize);
    let mut chains = Vec::new();
    for hook in 0..l.hooks {
        if info.valid_hooks & (1 << hook) == 0 {
            continue;
        }
        let start = index_of(info.hook_entry[hook])
            .ok_or_else(|| err(format!("hook {hook} entry offset is not an entry")))?;
        let policy_at = index_of(info.underflow[hook])
            .ok_or_else(|| err(format!("hook {hook} underflow offset is not an entry")))?;
        if policy_at < start {
            return Err(err(format!("hook {hook} policy precedes its first rule")));
        }
        let policy = &list[policy_at];
        chains.push(XtChain {
            name: l.hook_names[hook].to_string(),
            builtin: true,
            policy: Some(match policy.verdict {
                Some(v) => verdict_name(v),
                None => policy.target.clone(),
            }),
            rules: policy_at - start,
        });
    }
    // User chains: ERROR entry named after the chain .. next ERROR entry;
    // the last entry before the next head is the chain's RETURN.
    let heads: Vec<usize> = list
        .iter()
        .enumerate()
        .filter(|(_, e)| e.target == "ERROR")
        .map(|(i, _)| i)
        .collect();
    for pair in heads.windows(2) {
        let head = &list[pair[0]];
        let name = head.error_name.clone().unwrap_or_default();
        let body = pair[1] - pair[0] - 1; // entries after the head
        chains.push(XtChain {
            name,
            builtin: false,
            policy: None,
            rules: body.saturating_sub(1), // minus the RETURN tail
        });
    }
    Ok(chains)
}

/// Errors of the getsockopt reader.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// Socket creation failed.
    #[error("read {family} table {table:?}: cannot open a raw socket")]
    Socket {
        family: &'static str,
        table: String,
        #[source]
        source: io::Error,
    },
    /// A getsockopt call failed.
    #[error("read {family} table {table:?}: {call} failed")]
    Call {
        family: &'static str,
        table: String,
        call: &'static str,
        #[source]
        source: io::Error,
    },
    /// The data did not decode.
    #[error("read {family} table {table:?}")]
    Codec {
        family: &'static str,
        table: String,
        #[source]
        source: CodecError,
    },
}

impl crate::error::Hint for ReadError {
    /// A hint for the user.
    fn hint(&self) -> Option<std::borrow::Cow<'static, str>> {
        let errno = match self {
            ReadError::Socket { source, .. } | ReadError::Call { source, .. } => {
                source.raw_os_error()
            }
            ReadError::Codec { .. } => None,
        };
        match errno {
            Some(libc::EPERM) | Some(libc::EACCES) => Some(
                "reading legacy tables needs CAP_NET_ADMIN (and CAP_NET_RAW for the socket): run as root",
            ),
            Some(libc::ENOPROTOOPT) => {
                Some("this kernel has no legacy xtables interface for this family")
            }
            Some(libc::ENOENT) => Some("the table disappeared while it was being read"),
            _ => None,
        }.map(std::borrow::Cow::Borrowed)
    }
}

fn c_table_name(table: &str) -> [u8; TABLE_NAME_LEN] {
    let mut name = [0u8; TABLE_NAME_LEN];
    let n = table.len().min(TABLE_NAME_LEN - 1);
    name[..n].copy_from_slice(&table.as_bytes()[..n]);
    name
}

/// One `getsockopt(2)` into `buf`; returns the length the kernel filled in.
fn getsockopt_into(
    fd: &OwnedFd,
    level: libc::c_int,
    option: libc::c_int,
    buf: &mut [u8],
) -> io::Result<usize> {
    let mut len = libc::socklen_t::try_from(buf.len())
        .map_err(|_| io::Error::from_raw_os_error(libc::E2BIG))?;
    // SAFETY: `fd` is an open socket owned by the caller; `buf` is a valid,
    // writable allocation of `len` bytes that outlives the call, and `len` is
    // a valid pointer to its size, which the kernel may only lower.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            option,
            buf.as_mut_ptr().cast::<libc::c_void>(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(len as usize)
}

/// Opens the raw socket the xtables getsockopt interface hangs off.
fn raw_socket(domain: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) takes no pointers; the result is checked before use.
    let fd = unsafe {
        libc::socket(
            domain,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::IPPROTO_RAW,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a freshly created descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reads the chains of an **existing** table. Callers must have seen `table`
/// in the family's names file: asking for an unlisted table creates it.
pub fn read_chains(family: XtFamily, table: &str) -> Result<Vec<XtChain>, ReadError> {
    read_table(family, table, parse_chains)
}

/// The helpers of the `CT --helper` rules of an **existing** table (see
/// [`read_chains`]).
pub fn read_ct_helpers(family: XtFamily, table: &str) -> Result<Vec<String>, ReadError> {
    read_table(family, table, |family, _, entries| {
        ct_helpers(family, entries)
    })
}

/// Reads a table's info and entries and decodes them with `decode`.
fn read_table<T>(
    family: XtFamily,
    table: &str,
    decode: impl Fn(XtFamily, &TableInfo, &[u8]) -> Result<T, CodecError>,
) -> Result<T, ReadError> {
    let l = layout(family);
    let (level, get_info, get_entries, domain) = l.sockopt;
    let fam = family.name();
    let socket = raw_socket(domain).map_err(|source| ReadError::Socket {
        family: fam,
        table: table.to_string(),
        source,
    })?;
    let call_err = |call, source| ReadError::Call {
        family: fam,
        table: table.to_string(),
        call,
        source,
    };
    // The table can change between the two calls (EAGAIN from the kernel,
    // or a size mismatch): retry a few times like libiptc.
    let mut last_error = None;
    for _ in 0..5 {
        let mut info_buf = vec![0u8; l.info_size];
        info_buf[..TABLE_NAME_LEN].copy_from_slice(&c_table_name(table));
        getsockopt_into(&socket, level, get_info, &mut info_buf)
            .map_err(|e| call_err("GET_INFO", e))?;
        let info = parse_info(family, &info_buf).map_err(|source| ReadError::Codec {
            family: fam,
            table: table.to_string(),
            source,
        })?;
        let mut entries_buf = vec![0u8; GET_ENTRIES_HEADER + info.size as usize];
        entries_buf[..TABLE_NAME_LEN].copy_from_slice(&c_table_name(table));
        entries_buf[TABLE_NAME_LEN..TABLE_NAME_LEN + 4].copy_from_slice(&info.size.to_ne_bytes());
        match getsockopt_into(&socket, level, get_entries, &mut entries_buf) {
            Ok(_) => {
                return decode(family, &info, &entries_buf[GET_ENTRIES_HEADER..]).map_err(
                    |source| ReadError::Codec {
                        family: fam,
                        table: table.to_string(),
                        source,
                    },
                );
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EINVAL)) => {
                last_error = Some(e);
            }
            Err(e) => return Err(call_err("GET_ENTRIES", e)),
        }
    }
    Err(call_err(
        "GET_ENTRIES",
        last_error.unwrap_or_else(|| io::Error::from_raw_os_error(libc::EAGAIN)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ipt_getinfo` of a fresh `nat` table (reference §4.2).
    const NAT_INFO: [u8; 84] = {
        let mut b = [0u8; 84];
        b[0] = b'n';
        b[1] = b'a';
        b[2] = b't';
        let words: [u32; 13] = [
            0x1b,
            0,
            152,
            0xffff_ffff,
            304,
            456,
            0,
            152,
            0xffff_ffff,
            304,
            456,
            5,
            784,
        ];
        let mut i = 0;
        while i < 13 {
            let w = words[i].to_le_bytes();
            b[32 + 4 * i] = w[0];
            b[33 + 4 * i] = w[1];
            b[34 + 4 * i] = w[2];
            b[35 + 4 * i] = w[3];
            i += 1;
        }
        b
    };

    #[test]
    fn getinfo_vector_round_trips() {
        let info = parse_info(XtFamily::Ipv4, &NAT_INFO).unwrap();
        assert_eq!(info.name, "nat");
        assert_eq!(info.valid_hooks, 0x1b);
        assert_eq!(info.hook_entry, vec![0, 152, u32::MAX, 304, 456]);
        assert_eq!(info.underflow, vec![0, 152, u32::MAX, 304, 456]);
        assert_eq!(info.num_entries, 5);
        assert_eq!(info.size, 784);
        assert_eq!(encode_info(XtFamily::Ipv4, &info), NAT_INFO.to_vec());
    }

    /// Builds an ipv4 entry with a standard or ERROR target.
    fn entry(target: &str, data: &[u8]) -> Vec<u8> {
        let l = IPV4;
        let target_size = (TARGET_HEADER + data.len()).div_ceil(8) * 8;
        let mut e = vec![0u8; l.entry_size + target_size];
        e[l.target_offset_at..l.target_offset_at + 2]
            .copy_from_slice(&(l.entry_size as u16).to_ne_bytes());
        let next = e.len() as u16;
        e[l.next_offset_at..l.next_offset_at + 2].copy_from_slice(&next.to_ne_bytes());
        let t = l.entry_size;
        e[t..t + 2].copy_from_slice(&(target_size as u16).to_ne_bytes());
        e[t + 2..t + 2 + target.len()].copy_from_slice(target.as_bytes());
        e[t + TARGET_HEADER..t + TARGET_HEADER + data.len()].copy_from_slice(data);
        e
    }

    fn standard(verdict: i32) -> Vec<u8> {
        entry("", &verdict.to_ne_bytes())
    }

    fn error(name: &str) -> Vec<u8> {
        let mut data = [0u8; 30];
        data[..name.len()].copy_from_slice(name.as_bytes());
        entry("ERROR", &data)
    }

    #[test]
    fn fresh_nat_table_has_four_empty_accept_chains() {
        // Same geometry as the kernel's fresh nat table: 4 × 152 + 176 = 784.
        let mut blob = Vec::new();
        for _ in 0..4 {
            blob.extend(standard(-2));
        }
        blob.extend(error("ERROR"));
        assert_eq!(blob.len(), 784);
        let info = parse_info(XtFamily::Ipv4, &NAT_INFO).unwrap();
        let chains = parse_chains(XtFamily::Ipv4, &info, &blob).unwrap();
        let names: Vec<_> = chains.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"]);
        assert!(
            chains
                .iter()
                .all(|c| c.rules == 0 && c.policy.as_deref() == Some("ACCEPT"))
        );
    }

    #[test]
    fn rules_policies_and_user_chains() {
        // INPUT: 2 rules then policy DROP; user chain "mine" with 1 rule.
        let mut blob = Vec::new();
        let input_start = blob.len() as u32;
        blob.extend(standard(-2));
        blob.extend(standard(-1));
        let input_policy = blob.len() as u32;
        blob.extend(standard(-1));
        blob.extend(error("mine"));
        blob.extend(standard(-2));
        blob.extend(standard(-5)); // RETURN tail
        blob.extend(error("ERROR"));
        let info = TableInfo {
            name: "filter".into(),
            valid_hooks: 1 << 1,
            hook_entry: vec![0, input_start, 0, 0, 0],
            underflow: vec![0, input_policy, 0, 0, 0],
            num_entries: 7,
            size: blob.len() as u32,
        };
        let chains = parse_chains(XtFamily::Ipv4, &info, &blob).unwrap();
        assert_eq!(
            chains,
            vec![
                XtChain {
                    name: "INPUT".into(),
                    builtin: true,
                    policy: Some("DROP".into()),
                    rules: 2
                },
                XtChain {
                    name: "mine".into(),
                    builtin: false,
                    policy: None,
                    rules: 1
                },
            ]
        );
    }

    #[test]
    fn inconsistent_blobs_are_errors_not_panics() {
        let info = parse_info(XtFamily::Ipv4, &NAT_INFO).unwrap();
        assert!(parse_chains(XtFamily::Ipv4, &info, &[0u8; 100]).is_err());
        assert!(parse_chains(XtFamily::Ipv4, &info, &standard(-2)).is_err()); // count mismatch
        assert!(parse_info(XtFamily::Ipv4, &[0u8; 10]).is_err());
        let mut bad = standard(-2);
        bad[IPV4.next_offset_at] = 0xff; // next_offset beyond the blob
        assert!(parse_chains(XtFamily::Ipv4, &info, &bad).is_err());
    }
}
