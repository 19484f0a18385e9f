//! The seccomp filter: no new program and no new process, ever.
//!
//! Installed first thing in `main` (before any thread exists, so every later
//! thread inherits it). Two filters are stacked (seccomp runs every filter
//! and keeps the strictest answer):
//!
//! 1. `EPERM` for `execve`, `execveat`, `fork`, `vfork` (x86_64 only: aarch64
//!    has neither) and `clone` whose flags lack `CLONE_THREAD`. Before
//!    seccompiler's program, a prefix of our own answers `EPERM` for any
//!    other ABI's system call (i386 `int 0x80`: seccompiler would kill the
//!    process there) and, on x86_64, for every x32 system call number
//!    (`nr & 0x40000000`): nfkit is never an x32 program, so refusing the
//!    whole x32 range covers the x32 `execve` (520), `execveat` (545),
//!    `clone`, `fork`, … and any number added later, where listing
//!    them one by one would miss the next one.
//! 2. `ENOSYS` for `clone3`: its flags are in memory a filter cannot read,
//!    and glibc falls back to `clone` (where filter 1 sees the flags) only on
//!    `ENOSYS`; `EPERM` there would make every thread creation fail.
//!
//! Every action is an errno, never a kill: a violation surfaces as an error
//! nfkit reports.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch, sock_filter,
};

/// The system calls the filter refuses, as `status` names them.
pub const REFUSED: &[&str] = &[
    "execve",
    "execveat",
    #[cfg(target_arch = "x86_64")]
    "fork",
    #[cfg(target_arch = "x86_64")]
    "vfork",
    "clone without CLONE_THREAD",
    "clone3 (ENOSYS: glibc falls back to clone)",
    #[cfg(target_arch = "x86_64")]
    "every x32 system call",
    "every system call of another ABI",
];

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("nfkit's seccomp filter knows the system call numbers of x86_64 and aarch64 only");

#[cfg(target_arch = "x86_64")]
mod arch {
    pub const TARGET: seccompiler::TargetArch = seccompiler::TargetArch::x86_64;
    /// `AUDIT_ARCH_X86_64` (linux/audit.h).
    pub const AUDIT: u32 = 0xc000_003e;
    /// Bit of the x32 ABI's system call numbers.
    pub const X32_BIT: Option<u32> = Some(0x4000_0000);
    /// Process-creating calls without arguments worth checking.
    pub const PROCESS_CALLS: &[libc::c_long] = &[
        libc::SYS_execve,
        libc::SYS_execveat,
        libc::SYS_fork,
        libc::SYS_vfork,
    ];
}

#[cfg(target_arch = "aarch64")]
mod arch {
    pub const TARGET: seccompiler::TargetArch = seccompiler::TargetArch::aarch64;
    /// `AUDIT_ARCH_AARCH64` (linux/audit.h).
    pub const AUDIT: u32 = 0xc000_00b7;
    /// aarch64 has no second ABI numbering in the same arch value.
    pub const X32_BIT: Option<u32> = None;
    /// aarch64 has no fork/vfork system calls (glibc uses clone).
    pub const PROCESS_CALLS: &[libc::c_long] = &[libc::SYS_execve, libc::SYS_execveat];
}

/// Why the filter is not in force.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// Building the program failed (a bug: the rules are constants).
    #[error("build the seccomp filter: {0}")]
    Build(String),
    /// The kernel refused it (no `CONFIG_SECCOMP_FILTER`, or no `prctl`).
    #[error("install the seccomp filter")]
    Install(#[source] std::io::Error),
}

// Classic BPF opcodes (linux/bpf_common.h) for the prefix.
/// `BPF_LD | BPF_W | BPF_ABS`.
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JEQ_K: u16 = 0x05 | 0x10;
const BPF_JMP_JSET_K: u16 = 0x05 | 0x40;
const BPF_RET_K: u16 = 0x06;
/// `offsetof(struct seccomp_data, nr)` and `arch`.
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;

fn insn(code: u16, jt: u8, jf: u8, k: u32) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

fn ret_errno(errno: i32) -> u32 {
    libc::SECCOMP_RET_ERRNO | (errno as u32 & libc::SECCOMP_RET_DATA)
}

/// Our prefix: another ABI, or an x32 number, gets `EPERM`; the native ABI
/// falls through to the program that follows (jumps are relative, so a
/// prefix leaves the program after it intact).
fn prefix(audit: u32, x32_bit: Option<u32>) -> Vec<sock_filter> {
    let mut p = vec![
        insn(BPF_LD_W_ABS, 0, 0, DATA_ARCH),
        // native: skip the refusal.
        insn(BPF_JMP_JEQ_K, 1, 0, audit),
        insn(BPF_RET_K, 0, 0, ret_errno(libc::EPERM)),
    ];
    if let Some(bit) = x32_bit {
        p.extend([
            insn(BPF_LD_W_ABS, 0, 0, DATA_NR),
            // x32 number: fall into the refusal; else skip it.
            insn(BPF_JMP_JSET_K, 0, 1, bit),
            insn(BPF_RET_K, 0, 0, ret_errno(libc::EPERM)),
        ]);
    }
    p
}

fn compile(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    on_match: SeccompAction,
    arch: TargetArch,
    audit: u32,
    x32_bit: Option<u32>,
) -> Result<BpfProgram, SeccompError> {
    let filter = SeccompFilter::new(rules, SeccompAction::Allow, on_match, arch)
        .map_err(|e| SeccompError::Build(e.to_string()))?;
    let body: BpfProgram = filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| SeccompError::Build(e.to_string()))?;
    let mut program = prefix(audit, x32_bit);
    program.extend(body);
    Ok(program)
}

/// The two programs, in installation order.
pub(crate) fn programs() -> Result<[BpfProgram; 2], SeccompError> {
    let build = |e: seccompiler::BackendError| SeccompError::Build(e.to_string());
    let mut processes: BTreeMap<i64, Vec<SeccompRule>> = arch::PROCESS_CALLS
        .iter()
        .map(|&nr| (nr, Vec::new()))
        .collect();
    // clone(flags, ...): a new process unless CLONE_THREAD is set.
    let no_thread = SeccompCondition::new(
        0,
        SeccompCmpArgLen::Qword,
        SeccompCmpOp::MaskedEq(libc::CLONE_THREAD as u64),
        0,
    )
    .map_err(build)?;
    processes.insert(
        libc::SYS_clone,
        vec![SeccompRule::new(vec![no_thread]).map_err(build)?],
    );
    let first = compile(
        processes,
        SeccompAction::Errno(libc::EPERM as u32),
        arch::TARGET,
        arch::AUDIT,
        arch::X32_BIT,
    )?;
    let clone3: BTreeMap<i64, Vec<SeccompRule>> = [(libc::SYS_clone3, Vec::new())].into();
    // The x32 range is already refused by the first filter.
    let second = compile(
        clone3,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch::TARGET,
        arch::AUDIT,
        None,
    )?;
    Ok([first, second])
}

/// Installs both filters on the calling thread (and so on every thread it
/// creates later). Sets `no_new_privs` (seccompiler does, as seccomp needs).
pub(crate) fn install() -> Result<(), SeccompError> {
    for program in programs()? {
        seccompiler::apply_filter(&program).map_err(|e| match e {
            seccompiler::Error::Prctl(io) | seccompiler::Error::Seccomp(io) => {
                SeccompError::Install(io)
            }
            other => SeccompError::Build(other.to_string()),
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_programs_build_and_start_with_the_prefix() {
        let [first, second] = programs().unwrap();
        let p = prefix(arch::AUDIT, arch::X32_BIT);
        assert_eq!(first[..p.len()], p[..]);
        let p2 = prefix(arch::AUDIT, None);
        assert_eq!(second[..p2.len()], p2[..]);
        // No reachable kill action: every refusal is an errno. The only
        // kill is seccompiler's own arch check, after our prefix has already
        // answered every other arch (so it cannot be reached).
        for program in [&first, &second] {
            for (i, op) in program.iter().enumerate() {
                if op.code != BPF_RET_K {
                    continue;
                }
                let action = op.k & libc::SECCOMP_RET_ACTION_FULL;
                if action == libc::SECCOMP_RET_KILL_PROCESS {
                    let check = &program[i - 2..i];
                    assert_eq!(check[0], insn_ld_arch(), "kill at {i}");
                    assert_eq!(
                        check[1],
                        insn(BPF_JMP_JEQ_K, 1, 0, arch::AUDIT),
                        "kill at {i}"
                    );
                    assert!(i > p.len().min(p2.len()), "kill before the prefix at {i}");
                    continue;
                }
                assert!(
                    action == libc::SECCOMP_RET_ALLOW || action == libc::SECCOMP_RET_ERRNO,
                    "action {:#x}",
                    op.k
                );
            }
        }
    }

    fn insn_ld_arch() -> sock_filter {
        insn(BPF_LD_W_ABS, 0, 0, DATA_ARCH)
    }

    #[test]
    fn prefix_jumps_land_inside_the_program() {
        let p = prefix(arch::AUDIT, arch::X32_BIT);
        for (i, insn) in p.iter().enumerate() {
            if insn.code & 0x07 == 0x05 {
                // Both targets exist (the body follows the prefix).
                assert!(i + 1 + usize::from(insn.jt.max(insn.jf)) <= p.len());
            }
        }
    }
}
