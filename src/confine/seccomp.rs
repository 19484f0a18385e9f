//! The seccomp filter: no new program and no new process, ever.
//!
//! Installed first thing in `main` (before any thread exists, so every later
//! thread inherits it). One classic-BPF program, assembled here:
//!
//! | system call | answer |
//! |---|---|
//! | another ABI's (i386 `int 0x80` on x86_64) | `EPERM` |
//! | any x32 number (`nr >= 0x40000000`, x86_64) | `EPERM` |
//! | `execve`, `execveat`, `fork`, `vfork` (the last two: x86_64 only) | `EPERM` |
//! | `clone3` | `ENOSYS` |
//! | `clone` whose flags lack `CLONE_THREAD` | `EPERM` |
//! | everything else (threads: `clone` with `CLONE_THREAD`) | allowed |
//!
//! - `clone3` gets `ENOSYS`, not `EPERM`: its flags are in memory a filter
//!   cannot read, and glibc falls back to `clone` (whose flags are an
//!   argument the filter checks) only on `ENOSYS`; with `EPERM` every thread
//!   creation would fail.
//! - The whole x32 range is refused: nfkit is never an x32 program, so no x32
//!   call is legitimate, and a list of x32 numbers (`execve` 520,
//!   `execveat` 545, …) would miss the next one.
//! - Every answer is an errno, never a kill: a violation surfaces as an
//!   error nfkit reports.
//! - One filter, not two: each filter costs the kernel a JIT compilation and
//!   an emulation pass per system call number (its action cache); a second
//!   filter doubled the filter's share of `status`'s start-up (README
//!   "Performance"). That is also why no filter compiler is used: seccompiler
//!   puts one action per filter and kills on a foreign ABI (see the README's
//!   dependency table).
//!
//! The program is checked by an interpreter over generated system calls in
//! the tests below (`filter_decides_as_specified`).

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
    /// `AUDIT_ARCH_X86_64` (linux/audit.h).
    pub const AUDIT: u32 = 0xc000_003e;
    /// Bit of the x32 ABI's system call numbers.
    pub const X32_BIT: Option<u32> = Some(0x4000_0000);
    /// Refused outright with `EPERM` (the specification the tests check
    /// the program against).
    #[cfg(test)]
    pub const REFUSED: &[libc::c_long] = &[
        libc::SYS_execve,
        libc::SYS_execveat,
        libc::SYS_fork,
        libc::SYS_vfork,
    ];
    /// `clone` (56) starts a block of process calls: fork 57, vfork 58,
    /// execve 59.
    pub const BLOCK_END: libc::c_long = libc::SYS_execve;
}

#[cfg(target_arch = "aarch64")]
mod arch {
    /// `AUDIT_ARCH_AARCH64` (linux/audit.h).
    pub const AUDIT: u32 = 0xc000_00b7;
    /// aarch64 has no second numbering under the same arch value.
    pub const X32_BIT: Option<u32> = None;
    /// Refused outright (aarch64 has no fork/vfork: glibc uses clone).
    #[cfg(test)]
    pub const REFUSED: &[libc::c_long] = &[libc::SYS_execve, libc::SYS_execveat];
    /// `clone` (220) starts a block of process calls: execve 221.
    pub const BLOCK_END: libc::c_long = libc::SYS_execve;
}

/// Why the filter is not in force.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// `prctl(PR_SET_NO_NEW_PRIVS)` failed.
    #[error("set no_new_privs for the seccomp filter")]
    NoNewPrivs(#[source] std::io::Error),
    /// The kernel refused the filter (no `CONFIG_SECCOMP_FILTER`).
    #[error("install the seccomp filter")]
    Install(#[source] std::io::Error),
}

// Classic BPF opcodes (linux/bpf_common.h).
/// `BPF_LD | BPF_W | BPF_ABS`.
const LD_W_ABS: u16 = 0x20;
/// `BPF_JMP | BPF_JEQ | BPF_K`.
const JEQ_K: u16 = 0x15;
/// `BPF_JMP | BPF_JGT | BPF_K`.
const JGT_K: u16 = 0x25;
/// `BPF_JMP | BPF_JGE | BPF_K`.
const JGE_K: u16 = 0x35;
/// `BPF_JMP | BPF_JSET | BPF_K`.
const JSET_K: u16 = 0x45;
/// `BPF_RET | BPF_K`.
const RET_K: u16 = 0x06;

/// Offsets in `struct seccomp_data`.
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;
/// The low 32 bits of `args[0]` (`args` starts at 16).
#[cfg(target_endian = "little")]
const DATA_ARG0_LOW: u32 = 16;
#[cfg(target_endian = "big")]
const DATA_ARG0_LOW: u32 = 20;

const RET_ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
const RET_EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
const RET_ENOSYS: u32 = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;

/// Where a conditional jump goes.
#[derive(Clone, Copy)]
enum To {
    Next,
    Allow,
    Eperm,
    Enosys,
    /// The numbers from `execveat` up.
    High,
    /// The `clone` flags check.
    CloneFlags,
}

/// One instruction before its jumps are resolved.
enum Op {
    Load(u32),
    Jeq(u32, To, To),
    Jge(u32, To, To),
    Jgt(u32, To, To),
    Jset(u32, To, To),
}

/// The program, jumps resolved.
///
/// The kernel runs a new filter once per system call number of each ABI
/// when it is installed (to cache the numbers it always allows), so the
/// path of an allowed number is kept short: range checks first (4–7
/// instructions), not one comparison per refused call.
///
/// ```text
///     ld arch; jeq NATIVE else EPERM
///     ld nr
///     jge execveat → HIGH
///     jge clone else ALLOW            ; below clone
///     jgt BLOCK_END → ALLOW           ; between the block and execveat
///     jeq clone → FLAGS else EPERM    ; the block: clone, fork, vfork, execve
/// HIGH:
///     jeq execveat → EPERM
///     jeq clone3 → ENOSYS
///     jge 0x40000000 → EPERM else ALLOW   ; x32 (x86_64; aarch64: ALLOW)
/// FLAGS:
///     ld args[0] (low word); jset CLONE_THREAD → ALLOW else EPERM
/// ```
pub(crate) fn program() -> Vec<libc::sock_filter> {
    let nr = |n: libc::c_long| n as u32;
    let mut body = vec![
        Op::Load(DATA_ARCH),
        Op::Jeq(arch::AUDIT, To::Next, To::Eperm),
        Op::Load(DATA_NR),
        Op::Jge(nr(libc::SYS_execveat), To::High, To::Next),
        Op::Jge(nr(libc::SYS_clone), To::Next, To::Allow),
        Op::Jgt(nr(arch::BLOCK_END), To::Allow, To::Next),
        Op::Jeq(nr(libc::SYS_clone), To::CloneFlags, To::Eperm),
    ];
    let high = body.len();
    body.push(Op::Jeq(nr(libc::SYS_execveat), To::Eperm, To::Next));
    match arch::X32_BIT {
        Some(bit) => {
            body.push(Op::Jeq(nr(libc::SYS_clone3), To::Enosys, To::Next));
            body.push(Op::Jge(bit, To::Eperm, To::Allow));
        }
        None => body.push(Op::Jeq(nr(libc::SYS_clone3), To::Enosys, To::Allow)),
    }
    let flags = body.len();
    body.push(Op::Load(DATA_ARG0_LOW));
    body.push(Op::Jset(libc::CLONE_THREAD as u32, To::Allow, To::Eperm));
    let allow = body.len();
    let (eperm, enosys) = (allow + 1, allow + 2);
    let offset = |i: usize, to: To| -> u8 {
        let target = match to {
            To::Next => i + 1,
            To::Allow => allow,
            To::Eperm => eperm,
            To::Enosys => enosys,
            To::High => high,
            To::CloneFlags => flags,
        };
        u8::try_from(target - (i + 1)).expect("a short program: forward jumps fit in a byte")
    };
    let insn = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    let mut out: Vec<libc::sock_filter> = body
        .iter()
        .enumerate()
        .map(|(i, op)| match *op {
            Op::Load(off) => insn(LD_W_ABS, 0, 0, off),
            Op::Jeq(k, t, f) => insn(JEQ_K, offset(i, t), offset(i, f), k),
            Op::Jge(k, t, f) => insn(JGE_K, offset(i, t), offset(i, f), k),
            Op::Jgt(k, t, f) => insn(JGT_K, offset(i, t), offset(i, f), k),
            Op::Jset(k, t, f) => insn(JSET_K, offset(i, t), offset(i, f), k),
        })
        .collect();
    out.extend([
        insn(RET_K, 0, 0, RET_ALLOW),
        insn(RET_K, 0, 0, RET_EPERM),
        insn(RET_K, 0, 0, RET_ENOSYS),
    ]);
    out
}

/// Installs the filter on the calling thread (and so on every thread it
/// creates later), after setting `no_new_privs` (which an unprivileged
/// filter requires, and which Landlock needs too).
pub(crate) fn install() -> Result<(), SeccompError> {
    let filter = program();
    let prog = libc::sock_fprog {
        len: u16::try_from(filter.len()).expect("a short program"),
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: PR_SET_NO_NEW_PRIVS takes integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(SeccompError::NoNewPrivs(std::io::Error::last_os_error()));
    }
    // SECCOMP_FILTER_FLAG_SPEC_ALLOW (Linux 4.17): where the kernel's
    // speculation policy is `seccomp` (`spec_store_bypass_disable=` and
    // `spectre_v2_user=` default to it before 5.16, so on Debian 11's 5.10),
    // attaching a filter also forces Speculative Store Bypass Disable (and
    // STIBP) on the task, slowing every command down. Those protect a
    // process running untrusted code from leaking its own memory; nfkit runs
    // none: the filter is there to make spawning impossible, not to contain
    // hostile code. Without the flag (older kernel: EINVAL) the filter is
    // installed as it is.
    let mut r = seccomp_set_filter(&prog, libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW);
    if r.as_ref()
        .is_err_and(|e| e.raw_os_error() == Some(libc::EINVAL))
    {
        r = seccomp_set_filter(&prog, 0);
    }
    r.map_err(SeccompError::Install)
}

/// `seccomp(SECCOMP_SET_MODE_FILTER, flags, prog)`.
fn seccomp_set_filter(prog: &libc::sock_fprog, flags: libc::c_ulong) -> std::io::Result<()> {
    // SAFETY: `prog` points to a program that outlives the call (the caller
    // holds it); the kernel copies the program.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            std::ptr::from_ref(prog),
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A classic-BPF interpreter for the instructions the program uses,
    /// with the kernel's checks (forward jumps inside the program, the end
    /// reached only through a return).
    fn run(prog: &[libc::sock_filter], nr: u32, arch: u32, arg0: u64) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_ne_bytes());
        data[4..8].copy_from_slice(&arch.to_ne_bytes());
        data[16..24].copy_from_slice(&arg0.to_ne_bytes());
        let word = |off: u32| {
            let o = off as usize;
            u32::from_ne_bytes(data[o..o + 4].try_into().unwrap())
        };
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let i = prog.get(pc).expect("fell off the end of the program");
            let jump = |taken: bool| pc + 1 + usize::from(if taken { i.jt } else { i.jf });
            pc = match i.code {
                LD_W_ABS => {
                    acc = word(i.k);
                    pc + 1
                }
                JEQ_K => jump(acc == i.k),
                JGT_K => jump(acc > i.k),
                JGE_K => jump(acc >= i.k),
                JSET_K => jump(acc & i.k != 0),
                RET_K => return i.k,
                other => panic!("unexpected opcode {other:#x}"),
            };
            assert!(pc < prog.len(), "jump out of the program");
        }
    }

    /// The specification, written apart from the program.
    fn expected(nr: u32, arch: u32, arg0: u64) -> u32 {
        if arch != arch::AUDIT {
            return RET_EPERM;
        }
        // x32 numbers have bit 30 set; nothing native is that high.
        if arch::X32_BIT.is_some_and(|b| nr >= b) {
            return RET_EPERM;
        }
        let nr = libc::c_long::from(nr);
        if arch::REFUSED.contains(&nr) {
            RET_EPERM
        } else if nr == libc::SYS_clone3 {
            RET_ENOSYS
        } else if nr == libc::SYS_clone {
            if arg0 & libc::CLONE_THREAD as u64 != 0 {
                RET_ALLOW
            } else {
                RET_EPERM
            }
        } else {
            RET_ALLOW
        }
    }

    /// `AUDIT_ARCH_I386`.
    const I386: u32 = 0x4000_0003;

    fn interesting_nr() -> impl Strategy<Value = u32> {
        prop_oneof![
            0u32..1024,
            Just(libc::SYS_clone as u32),
            Just(libc::SYS_clone3 as u32),
            Just(libc::SYS_execve as u32),
            (0u32..1024).prop_map(|n| n | 0x4000_0000),
            any::<u32>(),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn filter_decides_as_specified(
            nr in interesting_nr(),
            arch in prop_oneof![Just(arch::AUDIT), Just(I386), any::<u32>()],
            arg0 in prop_oneof![
                Just(0u64),
                Just(libc::SIGCHLD as u64),
                // what glibc's pthread_create passes
                Just((libc::CLONE_VM | libc::CLONE_FS | libc::CLONE_FILES | libc::CLONE_SIGHAND
                    | libc::CLONE_THREAD | libc::CLONE_SYSVSEM | libc::CLONE_SETTLS
                    | libc::CLONE_PARENT_SETTID | libc::CLONE_CHILD_CLEARTID) as u64),
                // what glibc passes to start a program (posix spawn)
                Just((libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD) as u64),
                any::<u64>(),
            ],
        ) {
            prop_assert_eq!(run(&program(), nr, arch, arg0), expected(nr, arch, arg0));
        }
    }

    #[test]
    fn every_number_below_2048_and_around_the_x32_bit() {
        let p = program();
        let numbers = (0u32..2048).chain((0x3fff_fff0u32..0x4000_0800).step_by(1));
        for nr in numbers {
            for arg0 in [0, libc::CLONE_THREAD as u64] {
                assert_eq!(
                    run(&p, nr, arch::AUDIT, arg0),
                    expected(nr, arch::AUDIT, arg0),
                    "nr {nr:#x} arg0 {arg0:#x}"
                );
            }
        }
    }

    #[test]
    fn every_refusal_is_an_errno_never_a_kill() {
        for i in program() {
            if i.code == RET_K {
                let action = i.k & libc::SECCOMP_RET_ACTION_FULL;
                assert!(
                    action == libc::SECCOMP_RET_ALLOW || action == libc::SECCOMP_RET_ERRNO,
                    "{:#x}",
                    i.k
                );
            }
        }
    }

    #[test]
    fn the_named_cases() {
        let p = program();
        let native = arch::AUDIT;
        let nr = |n: libc::c_long| n as u32;
        assert_eq!(run(&p, nr(libc::SYS_execve), native, 0), RET_EPERM);
        assert_eq!(run(&p, nr(libc::SYS_execveat), native, 0), RET_EPERM);
        assert_eq!(run(&p, nr(libc::SYS_clone3), native, 0), RET_ENOSYS);
        assert_eq!(
            run(&p, nr(libc::SYS_clone), native, libc::SIGCHLD as u64),
            RET_EPERM
        );
        assert_eq!(
            run(&p, nr(libc::SYS_clone), native, libc::CLONE_THREAD as u64),
            RET_ALLOW
        );
        assert_eq!(run(&p, nr(libc::SYS_read), native, 0), RET_ALLOW);
        assert_eq!(run(&p, nr(libc::SYS_read), I386, 0), RET_EPERM);
        #[cfg(target_arch = "x86_64")]
        {
            assert_eq!(run(&p, nr(libc::SYS_fork), native, 0), RET_EPERM);
            assert_eq!(run(&p, nr(libc::SYS_vfork), native, 0), RET_EPERM);
            assert_eq!(run(&p, 0x4000_0000 | 520, native, 0), RET_EPERM);
            assert_eq!(run(&p, 0x4000_0000 | 545, native, 0), RET_EPERM);
        }
    }
}
