//! Entry points for the coverage-guided fuzz targets in `fuzz/` (not API).
//!
//! The fuzz crate links this library like any other user and sees only
//! `pub` items; the parsers and decoders it exercises are reached through
//! this one facade, with plain data in and out, so internals can stay (or
//! become) `pub(crate)` and a refactor has one place to update. Every
//! function here is a thin call into the code the CLI uses: no copy of any
//! parser.

use std::ops::Range;
use std::path::Path;

use netlink_packet_core::Emitable;

use crate::conntrack::{procstat, stats};
use crate::modules::name::ModuleName;
use crate::modules::{options, sysfs};
use crate::persist::values::{self, SysctlKey, SysctlValue};
use crate::persist::{desired, modprobe_d, module_list, shell_vars, sysctl_d};
use crate::tables::{names, nft, xtables};

pub use crate::persist::desired::Desired;
pub use crate::persist::modprobe_d::Directive;
pub use crate::persist::module_list::{BLOCK_BEGIN, BLOCK_END};
pub use crate::tables::nft::{NftChain, NftTable};
pub use crate::tables::xtables::{TableInfo, XtChain};

/// The path used in messages.
const FILE: &str = "/fuzz/input";

// ---- nfkit.toml -------------------------------------------------------

/// `Desired::parse` (TOML syntax and validation).
pub fn desired_parse(text: &str) -> Result<Desired, String> {
    Desired::parse(FILE, text).map_err(|e| e.to_string())
}

/// nfkit.toml as nfkit writes it (no comments).
pub fn desired_render(desired: &Desired) -> String {
    desired.render(&[])
}

/// What nfkit persists for a desired state, in the form each renderer
/// takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Persisted {
    /// Modules to load at boot (modules-load.d, `/etc/modules`,
    /// `IPTABLES_MODULES`).
    pub load: Vec<String>,
    /// `options` lines of modprobe.d: module → `key=value` words.
    pub options: Vec<(String, Vec<String>)>,
    /// sysctl.d lines: key → value.
    pub sysctl: Vec<(String, String)>,
}

/// The lists [`Desired`] hands to the file renderers.
pub fn desired_persisted(desired: &Desired) -> Persisted {
    Persisted {
        load: desired
            .load_list()
            .into_iter()
            .map(ModuleName::into_string)
            .collect(),
        options: desired
            .module_options()
            .into_iter()
            .map(|(m, o)| {
                let words = o.iter().map(|(name, value)| value.word(name)).collect();
                (m.into_string(), words)
            })
            .collect(),
        sysctl: desired
            .sysctl_settings()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

/// `desired::real_module_name` (of the canonical spelling of `name`).
pub fn real_module_name(name: &str) -> String {
    desired::real_module_name(&ModuleName::canonical(name)).into_string()
}

// ---- the typed values (what the renderers take) ------------------------

/// A module name as the renderers take it (`values::module_name`,
/// canonical), `None` when the type refuses it.
pub fn module_name(name: &str) -> Option<String> {
    values::module_name(name).ok().map(ModuleName::into_string)
}

/// A `name=value` option word as the renderers write it
/// (`values::split_word`), `None` when the types refuse it.
pub fn option_word(word: &str) -> Option<String> {
    values::split_word(word).ok().map(|(n, v)| v.word(&n))
}

/// A sysctl setting as the renderers take it (key dotted), `None` when the
/// types refuse it.
pub fn sysctl_setting(key: &str, value: &str) -> Option<(String, String)> {
    let key = SysctlKey::parse(key).ok()?;
    let value = SysctlValue::parse(value).ok()?;
    Some((key.to_string(), value.to_string()))
}

fn typed_modules(modules: &[String]) -> Vec<ModuleName> {
    modules
        .iter()
        .map(|m| values::module_name(m).expect("callers filter with fuzzing::module_name"))
        .collect()
}

// ---- modprobe.d -------------------------------------------------------

/// One parsed modprobe.d directive with its 1-based line.
pub type LocatedDirective = (usize, Directive);

/// `modprobe_d::parse`: directives and the lines of syntax errors.
pub fn modprobe_d_parse(text: &str) -> (Vec<LocatedDirective>, Vec<usize>) {
    let (directives, errors) = modprobe_d::parse(Path::new(FILE), text);
    (
        directives
            .into_iter()
            .map(|d| (d.line, d.directive))
            .collect(),
        errors.into_iter().map(|e| e.line).collect(),
    )
}

/// `modprobe_d::render_options_file` (nfkit's own modprobe.d file). The
/// names and words must be ones [`module_name`] and [`option_word`] accept.
pub fn modprobe_d_render(header: &str, options: &[(String, Vec<String>)]) -> String {
    let typed: Vec<_> = options
        .iter()
        .map(|(m, words)| {
            let words = words
                .iter()
                .map(|w| values::split_word(w).expect("callers filter with fuzzing::option_word"))
                .collect();
            (typed_modules(std::slice::from_ref(m)).remove(0), words)
        })
        .collect();
    modprobe_d::render_options_file(header, &typed)
}

/// `modprobe_d::normalize_module`.
pub fn normalize_module(name: &str) -> String {
    modprobe_d::normalize_module(name)
}

// ---- module options (modprobe.d values, /sys parameters) ---------------

/// `options::split`: `(name, value)` per word.
pub fn options_split(text: &str) -> Vec<(String, Option<String>)> {
    options::split(text)
        .into_iter()
        .map(|o| (o.name, o.value))
        .collect()
}

/// `options::join` of options built from `(name, value)`.
pub fn options_join(list: &[(String, Option<String>)]) -> String {
    let list: Vec<options::ModOption> = list
        .iter()
        .map(|(name, value)| options::ModOption {
            name: name.clone(),
            value: value.clone(),
        })
        .collect();
    options::join(&list)
}

/// `options::parse_given` (a `NAME=VALUE` from the command line).
pub fn options_parse_given(text: &str) -> Result<(String, Option<String>), String> {
    options::parse_given(text)
        .map(|o| (o.name, o.value))
        .map_err(|e| e.to_string())
}

// ---- sysctl.d ----------------------------------------------------------

/// One parsed sysctl.d assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysctlLine {
    /// 1-based line.
    pub line: usize,
    /// Key as written (without a leading `-`).
    pub key: String,
    /// The key as a `/proc/sys` relative path.
    pub path: String,
    /// Value, trimmed.
    pub value: String,
    /// `-key = value`.
    pub ignore_failure: bool,
}

/// `sysctl_d::parse`: assignments and the lines of syntax errors.
pub fn sysctl_d_parse(text: &str) -> (Vec<SysctlLine>, Vec<usize>) {
    let (assignments, errors) = sysctl_d::parse(Path::new(FILE), text);
    (
        assignments
            .into_iter()
            .map(|a| SysctlLine {
                line: a.line,
                key: a.key,
                path: a.path,
                value: a.value,
                ignore_failure: a.ignore_failure,
            })
            .collect(),
        errors.into_iter().map(|e| e.line).collect(),
    )
}

/// `sysctl_d::render` (nfkit's own sysctl.d file).
/// The settings must be ones [`sysctl_setting`] accepts.
pub fn sysctl_d_render(header: &str, settings: &[(String, String)]) -> String {
    let typed: Vec<_> = settings
        .iter()
        .map(|(k, v)| {
            (
                SysctlKey::parse(k).expect("callers filter with fuzzing::sysctl_setting"),
                SysctlValue::parse(v).expect("callers filter with fuzzing::sysctl_setting"),
            )
        })
        .collect();
    sysctl_d::render(header, &typed)
}

// ---- modules-load.d, /etc/modules -------------------------------------

/// One list entry: `(line, module, parameters)`.
pub type ListLine = (usize, String, Vec<String>);

/// `module_list::parse`.
pub fn module_list_parse(text: &str) -> Vec<ListLine> {
    module_list::parse(text)
        .into_iter()
        .map(|e| (e.line, e.module, e.params))
        .collect()
}

/// `module_list::render` (nfkit's own modules-load.d file).
/// The names must be ones [`module_name`] accepts.
pub fn module_list_render(header: &str, modules: &[String]) -> String {
    module_list::render(header, &typed_modules(modules))
}

/// `module_list::block_modules` (nfkit's block in `/etc/modules`).
pub fn module_list_block(text: &str) -> Result<Vec<String>, String> {
    module_list::block_modules(text).map_err(|e| e.to_string())
}

/// `module_list::with_block`.
/// The names must be ones [`module_name`] accepts.
pub fn module_list_with_block(text: &str, modules: &[String]) -> Result<String, String> {
    module_list::with_block(text, &typed_modules(modules)).map_err(|e| e.to_string())
}

// ---- iptables-config (shell variables) ---------------------------------

/// One parsed shell assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellLine {
    /// Variable name.
    pub name: String,
    /// Value after quote removal.
    pub value: String,
    /// Byte range of the raw value in the text.
    pub span: Range<usize>,
    /// 1-based line.
    pub line: usize,
}

/// `shell_vars::parse`; the error is `(line, message)`.
pub fn shell_parse(text: &str) -> Result<Vec<ShellLine>, (usize, String)> {
    shell_vars::parse(text)
        .map(|list| {
            list.into_iter()
                .map(|a| ShellLine {
                    name: a.name,
                    value: a.value,
                    span: a.span,
                    line: a.line,
                })
                .collect()
        })
        .map_err(|e| (e.line, e.to_string()))
}

/// `shell_vars::set_words`.
pub fn shell_set_words(text: &str, name: &str, words: &[String]) -> Result<String, String> {
    shell_vars::set_words(text, name, words).map_err(|e| e.to_string())
}

/// `shell_vars::words` (how the init script splits the value).
pub fn shell_words(value: &str) -> Vec<String> {
    shell_vars::words(value)
}

// ---- /proc and module-directory text files ----------------------------

/// `/proc/net/stat/nf_conntrack`: `(entries, per-CPU rows as (kind, value),
/// expectation counters)`, or the error's line.
pub type ProcStat = (Option<u64>, Vec<Vec<(u16, u64)>>, Vec<(String, u64)>);

/// `procstat::parse`.
pub fn procstat_parse(text: &str) -> Result<ProcStat, (usize, String)> {
    procstat::parse(text)
        .map(|s| {
            (
                s.entries,
                s.per_cpu
                    .iter()
                    .map(|c| c.0.iter().map(|(k, v)| (k.kind(), *v)).collect())
                    .collect(),
                s.expect,
            )
        })
        .map_err(|e| (e.line, e.to_string()))
}

/// `/proc/modules` line: `(name, size, refcnt, holders, state)`.
pub type ProcModuleLine = (String, u64, u32, Vec<String>, String);

/// `sysfs::parse_proc_modules`.
pub fn proc_modules_parse(text: &str) -> Vec<ProcModuleLine> {
    sysfs::parse_proc_modules(text)
        .into_iter()
        .map(|m| {
            (
                m.name,
                m.size,
                m.refcnt,
                m.holders,
                m.state.as_str().to_string(),
            )
        })
        .collect()
}

/// `/proc/net/*_tables_names`.
pub fn table_names_parse(text: &str) -> Vec<String> {
    names::parse_names(text)
}

/// A kernel config (`/proc/config.gz`): the gzip stream expanded to at most
/// 4 MiB (`None` = refused: damaged or over the cap), then the options the
/// name rules derive for `module` looked up in it as `(option, value)`.
pub fn kernel_config_lookup(gz: &[u8], module: &str) -> Option<Vec<(String, String)>> {
    let bytes = crate::read::gunzip_capped(gz, crate::read::Kind::Config).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    let candidates = crate::modules::explain::config_candidates(module);
    Some(
        crate::modules::explain::config_lookup(&text, &candidates)
            .into_iter()
            .map(|h| (h.option, h.value))
            .collect(),
    )
}

/// Module names in a `modules.builtin` text.
pub fn builtin_names_parse(text: &str) -> Vec<String> {
    crate::modules::name::names_in_builtin(text)
        .map(crate::modules::name::ModuleName::into_string)
        .collect()
}

// ---- netlink replies ----------------------------------------------------

/// `netlink::split_frames`: `(message type, payload)` per frame.
pub fn netlink_split_frames(datagram: &[u8]) -> Result<Vec<(u16, Vec<u8>)>, String> {
    crate::netlink::split_frames(datagram).map(|frames| {
        frames
            .into_iter()
            .map(|f| (f.header.message_type, f.payload))
            .collect()
    })
}

/// `nft::table_from_reply` (a frame of the table dump); `Err` when the
/// message does not decode.
pub fn nft_table_from_frame(message_type: u16, payload: &[u8]) -> Result<Option<NftTable>, String> {
    let mut header = netlink_packet_core::NetlinkHeader::default();
    header.message_type = message_type;
    let reply = crate::netlink::Reply {
        header,
        payload: payload.to_vec(),
    };
    nft::table_from_reply("fuzz", &reply).map_err(|e| e.to_string())
}

/// `nft::chain_from_reply`.
pub fn nft_chain_from_reply(family: u8, payload: &[u8]) -> Option<(String, NftChain)> {
    nft::chain_from_reply(family, payload)
}

/// `nft::rule_location`.
pub fn nft_rule_location(payload: &[u8]) -> Option<(String, String)> {
    nft::rule_location(payload)
}

/// `stats::decode_cpu_counters`: `(attribute type, value)` in order.
pub fn stats_decode_cpu(attributes: &[u8]) -> Result<Vec<(u16, u64)>, String> {
    stats::decode_cpu_counters(attributes)
        .map(|c| c.0.iter().map(|(k, v)| (k.kind(), *v)).collect())
        .map_err(|e| e.to_string())
}

/// `stats::encode_cpu_counters`, emitted as attribute bytes.
pub fn stats_encode_cpu(counters: &[(u16, u64)]) -> Vec<u8> {
    let counters = stats::Counters(
        counters
            .iter()
            .map(|(k, v)| (stats::CpuCounter::from_kind(*k), *v))
            .collect(),
    );
    emit(&stats::encode_cpu_counters(&counters))
}

/// Global stats: `(entries, max_entries, other attributes)`.
pub type Global = (u32, Option<u32>, Vec<(u16, Vec<u8>)>);

/// `stats::decode_global`.
pub fn stats_decode_global(attributes: &[u8]) -> Result<Global, String> {
    stats::decode_global(attributes)
        .map(|g| (g.entries, g.max_entries, g.other))
        .map_err(|e| e.to_string())
}

/// `stats::encode_global`, emitted as attribute bytes.
pub fn stats_encode_global(global: &Global) -> Vec<u8> {
    let stats = stats::GlobalStats {
        entries: global.0,
        max_entries: global.1,
        other: global.2.clone(),
    };
    emit(&stats::encode_global(&stats))
}

fn emit(nlas: &[netlink_packet_core::DefaultNla]) -> Vec<u8> {
    let mut out = vec![0u8; nlas.buffer_len()];
    nlas.emit(&mut out);
    out
}

fn xt_family(index: u8) -> names::XtFamily {
    names::XtFamily::ALL[usize::from(index) % names::XtFamily::ALL.len()]
}

/// `xtables::parse_info` for family `index % 3` (ipv4, ipv6, arp).
pub fn xt_parse_info(family: u8, buf: &[u8]) -> Result<TableInfo, String> {
    xtables::parse_info(xt_family(family), buf).map_err(|e| e.to_string())
}

/// `xtables::encode_info`.
pub fn xt_encode_info(family: u8, info: &TableInfo) -> Vec<u8> {
    xtables::encode_info(xt_family(family), info)
}

/// `xtables::parse_chains`.
pub fn xt_parse_chains(
    family: u8,
    info: &TableInfo,
    entries: &[u8],
) -> Result<Vec<XtChain>, String> {
    xtables::parse_chains(xt_family(family), info, entries).map_err(|e| e.to_string())
}
