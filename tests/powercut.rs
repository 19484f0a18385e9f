//! Power cuts (issue 11 §3): crash states replayed from a guest's write log.
//!
//! The VM scenario `powercut` (vm-tests/scenarios/powercut.sh) runs nfkit
//! through a sequence of steps on an ext4 disk behind qemu's `blklogwrites`
//! driver; its compare step runs `replay_vm_log` here (ignored in plain
//! `cargo test`: it needs that run's results, named by
//! `NFKIT_POWERCUT_RUN`). The other tests prove the parts: the log parser
//! against logs qemu itself writes (`qemu-io`), the state generator, the
//! judge, and the whole chain on a filesystem image the test builds.

#[path = "powercut/check.rs"]
mod check;
#[path = "powercut/log.rs"]
mod log;
#[path = "powercut/states.rs"]
mod states;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use check::{Finding, Problem, Steps};
use log::Op;
use states::{CrashState, Kind, Plan};

/// The negative control: rewritten carelessly by the guest, never fsynced.
const CONTROL: &str = "etc/naive.conf";
/// Files the guest writes as nfkit's input (atomically, by hand).
const INPUTS: [&str; 2] = ["etc/nfkit/nfkit.toml", "etc/sysctl.d/95-admin.conf"];

fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a number")),
        Err(_) => default,
    }
}

fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::Builder::new()
            .prefix("nfkit-powercut.")
            .tempdir_in(shm)
            .unwrap()
    } else {
        tempfile::tempdir().unwrap()
    }
}

/// The op index of the write that holds step `k`'s mark text, for every step.
fn find_marks(ops: &[Op], steps: usize, sector: usize) -> Vec<usize> {
    (0..steps)
        .map(|k| {
            let text = format!("NFKIT-POWERCUT-MARK {k:02}\n");
            ops.iter()
                .position(|op| match op {
                    Op::Write { data, .. } => {
                        data.chunks(sector).any(|c| c.starts_with(text.as_bytes()))
                    }
                    _ => false,
                })
                .unwrap_or_else(|| panic!("no write in the log holds the mark of step {k}"))
        })
        .collect()
}

/// Counts over a run of states.
#[derive(Default)]
struct Tally {
    states: usize,
    by_kind: BTreeMap<String, usize>,
    fsck_bad: usize,
    nfkit_bad: usize,
    control_bad: usize,
    control_problems: BTreeMap<String, usize>,
    violation_states: usize,
    violation_caught: usize,
    violation_fsck: usize,
}

/// Per completed-step count: the state kept for the verify/apply check
/// (its tree, and how many files differ from the step apply would reach).
struct Candidate {
    index: usize,
    dump: PathBuf,
    diff: usize,
    target: usize,
    differs: BTreeSet<String>,
}

fn problem_word(p: &Problem) -> String {
    match p {
        Problem::Missing => "missing".into(),
        Problem::Empty => "empty".into(),
        Problem::Torn { .. } => "torn".into(),
        Problem::OtherStep { .. } => "other-step".into(),
        Problem::Appeared => "appeared".into(),
    }
}

fn read_in(dump: &Path) -> impl Fn(&str) -> Option<Vec<u8>> + '_ {
    move |p: &str| {
        let f = dump.join(p);
        f.is_file().then(|| fs::read(&f).unwrap())
    }
}

/// The step whose inputs the crash state holds (the newer one when both
/// match), or None when they match neither (or nfkit.toml is absent).
fn target_step(
    steps: &Steps,
    completed: usize,
    read: &dyn Fn(&str) -> Option<Vec<u8>>,
) -> Option<usize> {
    let candidates: Vec<usize> = if completed < steps.count() {
        vec![completed, completed - 1]
    } else {
        vec![completed - 1]
    };
    candidates.into_iter().find(|&j| {
        INPUTS.iter().all(|p| {
            let want = steps.files.get(*p).and_then(|v| v[j].clone());
            read(p) == want
        }) && steps.version(INPUTS[0], j).is_some()
    })
}

/// Files nfkit itself owns or edits, whose content should be step j's.
fn outputs(steps: &Steps) -> Vec<&str> {
    steps
        .files
        .keys()
        .map(String::as_str)
        .filter(|p| *p != CONTROL && !INPUTS.contains(p))
        .collect()
}

fn differing(steps: &Steps, j: usize, read: &dyn Fn(&str) -> Option<Vec<u8>>) -> BTreeSet<String> {
    outputs(steps)
        .into_iter()
        .filter(|p| read(p).as_deref() != steps.version(p, j))
        .map(str::to_string)
        .collect()
}

fn nfkit(root: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_nfkit"))
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Issue 11 §3's second half, on the host (offline mode is what `--root`
/// is for): in a crash state, `apply --check` names exactly the files that
/// differ from the step nfkit.toml describes, `apply` converges them to
/// that step's bytes, and afterwards `verify` and `apply --check` exit 0.
/// Returns the problems found and a one-line account.
fn verify_and_converge(steps: &Steps, completed: usize, dump: &Path) -> (Vec<String>, String) {
    let read = read_in(dump);
    let mut bad = Vec::new();
    let Some(j) = target_step(steps, completed, &read) else {
        return (vec!["inputs match no step".into()], String::new());
    };
    let diff = differing(steps, j, &read);
    let (verify_before, _) = nfkit(dump, &["verify"]);
    let (code, text) = nfkit(dump, &["--json", "apply", "--check"]);
    let report: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("apply --check --json: {e}: {text}"));
    let planned: BTreeSet<String> = report["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["action"] != "unchanged")
        .map(|f| {
            f["path"]
                .as_str()
                .unwrap()
                .trim_start_matches('/')
                .to_string()
        })
        .collect();
    if planned != diff {
        bad.push(format!(
            "apply --check plans {planned:?}, the state differs in {diff:?}"
        ));
    }
    if code != if diff.is_empty() { 0 } else { 3 } {
        bad.push(format!(
            "apply --check exited {code} with {} differing files",
            diff.len()
        ));
    }
    if diff.is_empty() && verify_before != 0 {
        bad.push(format!(
            "verify exited {verify_before} on a converged state"
        ));
    }
    let (code, text) = nfkit(dump, &["apply"]);
    if code != 0 {
        bad.push(format!("apply exited {code}: {text}"));
    }
    let after = differing(steps, j, &read);
    if !after.is_empty() {
        bad.push(format!("after apply still not step {j}: {after:?}"));
    }
    let (code, text) = nfkit(dump, &["verify"]);
    if code != 0 {
        bad.push(format!("verify after apply exited {code}: {text}"));
    }
    let (code, _) = nfkit(dump, &["apply", "--check"]);
    if code != 0 {
        bad.push(format!("apply --check after apply exited {code}"));
    }
    let line = format!(
        "target step {j}, {} files differed {:?}, verify before: exit {verify_before}",
        diff.len(),
        diff
    );
    (bad, line)
}

/// Replays every crash state of a run and judges it. Returns the report and
/// the tally; panics on a broken log (not a finding).
fn replay(run: &Path, plan: Plan, report: &mut String) -> (Tally, usize) {
    let disk = run.join("logged-disk");
    let base = fs::read(disk.join("base.img")).expect("logged-disk/base.img");
    let last = fs::read(disk.join("data.img")).expect("logged-disk/data.img");
    let bytes = fs::read(disk.join("writes.log")).expect("logged-disk/writes.log");
    let parsed = log::parse(&bytes).unwrap_or_else(|e| panic!("writes.log: {e}"));
    let ops = parsed.ops;
    let steps = Steps::load(&run.join("steps"));
    assert!(
        steps.count() >= 2,
        "the run recorded {} steps",
        steps.count()
    );
    let flushes = ops.iter().filter(|o| matches!(o, Op::Flush)).count();
    let writes = ops.len() - flushes;
    writeln!(
        report,
        "log: {} ops ({writes} writes, {flushes} flushes), sector {}",
        ops.len(),
        parsed.sector_size
    )
    .unwrap();

    // The replay is the disk: every op applied to the first image gives the
    // guest's last image, byte for byte.
    let mut whole = check::Replayer::new(base.clone(), &ops);
    whole.advance(ops.len());
    assert!(
        whole.durable() == last.as_slice(),
        "replaying the whole log does not give data.img"
    );

    let marks = find_marks(
        &ops,
        steps.count(),
        usize::try_from(parsed.sector_size).unwrap(),
    );
    assert!(
        marks.windows(2).all(|w| w[0] < w[1]),
        "marks out of order: {marks:?}"
    );
    for (k, m) in marks.iter().enumerate() {
        writeln!(report, "step {k:02} {:<28} mark at op {m}", steps.names[k]).unwrap();
    }
    // Judged states start at the first cut where the setup step is durable.
    let start = (marks[0]..ops.len())
        .find(|&i| matches!(ops[i], Op::Flush))
        .expect("a flush after the setup mark")
        + 1;
    let states = states::generate(&ops, start, plan);

    let tmp = scratch();
    let image = tmp.path().join("state.img");
    let dumpdir = tmp.path().join("dump");
    let mut replayer = check::Replayer::new(base, &ops);
    let mut tally = Tally::default();
    let mut candidates: BTreeMap<usize, Candidate> = BTreeMap::new();
    for (index, state) in states.iter().enumerate() {
        let completed = states::completed_steps(&marks, state.prefix);
        replayer.materialize(state, &image);
        tally.states += 1;
        *tally
            .by_kind
            .entry(format!("{:?}", state.kind))
            .or_default() += 1;
        let label = format!(
            "state {index} {:?} prefix {} +{} writes, step {completed} in progress",
            state.kind,
            state.prefix,
            state.extra.len()
        );
        if let Err(e) = check::fsck(&image) {
            tally.fsck_bad += 1;
            tally.nfkit_bad += 1;
            writeln!(report, "BAD {label}: {e}").unwrap();
            continue;
        }
        if let Err(e) = check::dump(&image, &dumpdir) {
            tally.nfkit_bad += 1;
            writeln!(report, "BAD {label}: {e}").unwrap();
            continue;
        }
        let read = read_in(&dumpdir);
        let findings = check::judge(&steps, completed, &read);
        let (control, ours): (Vec<&Finding>, Vec<&Finding>) =
            findings.iter().partition(|f| f.path == CONTROL);
        if !ours.is_empty() {
            tally.nfkit_bad += 1;
            writeln!(report, "BAD {label}: {ours:?}").unwrap();
        }
        if let Some(f) = control.first() {
            tally.control_bad += 1;
            *tally
                .control_problems
                .entry(problem_word(&f.problem))
                .or_default() += 1;
        }
        // Keep the state with the most files to converge, per step.
        if let Some(j) = target_step(&steps, completed, &read) {
            let differs = differing(&steps, j, &read);
            let diff = differs.len();
            let better = candidates.get(&completed).is_none_or(|c| diff > c.diff);
            if better && ours.is_empty() {
                let keep = tmp.path().join(format!("candidate-{completed}"));
                let _ = fs::remove_dir_all(&keep);
                fs::rename(&dumpdir, &keep).unwrap();
                candidates.insert(
                    completed,
                    Candidate {
                        index,
                        dump: keep,
                        diff,
                        target: j,
                        differs,
                    },
                );
            }
        }
    }

    // Second negative control: states a disk honouring flushes can never
    // produce (one flushed interval's writes lost, the next interval's
    // kept). The checker must see damage in some of them, or it sees
    // nothing.
    let cuts: Vec<usize> = states
        .iter()
        .filter(|s| s.kind == Kind::FlushPrefix)
        .map(|s| s.prefix)
        .collect();
    let mut violations = check::Replayer::new(fs::read(disk.join("base.img")).unwrap(), &ops);
    for w in cuts.windows(3) {
        let (before, after, next) = (w[0], w[1], w[2]);
        let kept: Vec<usize> = (after..next)
            .filter(|&i| !matches!(ops[i], Op::Flush))
            .collect();
        if kept.is_empty() || (before..after - 1).all(|i| matches!(ops[i], Op::Flush)) {
            continue;
        }
        let state = CrashState {
            kind: Kind::Subset,
            prefix: before,
            extra: kept,
        };
        violations.materialize(&state, &image);
        tally.violation_states += 1;
        let completed = states::completed_steps(&marks, next);
        let damaged = match check::fsck(&image).and_then(|()| check::dump(&image, &dumpdir)) {
            Err(_) => {
                tally.violation_fsck += 1;
                true
            }
            Ok(()) => {
                completed >= 1
                    && check::judge(&steps, completed, read_in(&dumpdir))
                        .iter()
                        .any(|f| f.path != CONTROL)
            }
        };
        tally.violation_caught += usize::from(damaged);
    }

    writeln!(
        report,
        "verify/apply on one crash state per step (host, --root on the state's tree):"
    )
    .unwrap();
    // For the boot of the crash states (vm-tests powercut, boot "crash"):
    // each step's kept state as a raw image, journal NOT replayed (the
    // guest kernel does it at mount), and what the guest must find.
    if let Ok(dir) = std::env::var("NFKIT_POWERCUT_EXPORT") {
        let dir = PathBuf::from(dir);
        fs::create_dir_all(&dir).unwrap();
        let mut exporter = check::Replayer::new(fs::read(disk.join("base.img")).unwrap(), &ops);
        let mut by_index: Vec<(&usize, &Candidate)> = candidates.iter().collect();
        by_index.sort_by_key(|(_, c)| c.index);
        for (k, c) in by_index {
            exporter.materialize(&states[c.index], &dir.join(format!("crash-{k:02}.img")));
            let mut expect = format!("state {}\ntarget {:02}\n", c.index, c.target);
            for p in &c.differs {
                writeln!(expect, "differs {p}").unwrap();
            }
            for p in outputs(&steps) {
                writeln!(expect, "output {p}").unwrap();
            }
            fs::write(dir.join(format!("crash-{k:02}.expect")), expect).unwrap();
        }
        writeln!(
            report,
            "exported {} crash images to {}",
            candidates.len(),
            dir.display()
        )
        .unwrap();
    }

    let mut converge_bad = 0;
    for k in 1..steps.count() + 1 {
        let Some(c) = candidates.get(&k) else {
            converge_bad += 1;
            writeln!(
                report,
                "BAD step {k}: no crash state with nfkit.toml to try"
            )
            .unwrap();
            continue;
        };
        let (bad, line) = verify_and_converge(&steps, k, &c.dump);
        writeln!(report, "  step {k} state {}: {line}", c.index).unwrap();
        for b in &bad {
            writeln!(report, "BAD step {k} state {}: {b}", c.index).unwrap();
        }
        converge_bad += usize::from(!bad.is_empty());
    }
    (tally, converge_bad)
}

#[test]
#[ignore = "needs a powercut VM run: vm-tests/run powercut (its compare step runs this)"]
fn replay_vm_log() {
    let run =
        PathBuf::from(std::env::var("NFKIT_POWERCUT_RUN").expect(
            "NFKIT_POWERCUT_RUN names the powercut scenario's results (…/logs/powercut/run)",
        ));
    let plan = Plan {
        inside: env_usize("NFKIT_POWERCUT_INSIDE", 16),
        subsets: env_usize("NFKIT_POWERCUT_SUBSETS", 64),
        seed: env_usize("NFKIT_POWERCUT_SEED", 0x5eed) as u64,
    };
    let min_states = env_usize("NFKIT_POWERCUT_MIN_STATES", 500);
    let t0 = Instant::now();
    let mut report = String::new();
    let (tally, converge_bad) = replay(&run, plan, &mut report);
    writeln!(
        report,
        "summary: {} crash states ({:?}; inside {}, subsets {}, seed {:#x}) in {} s: \
         {} bad for nfkit ({} fsck), negative control caught in {} ({:?}); \
         flush order violated on purpose: damage seen in {} of {} ({} by fsck); \
         verify/apply per step: {} bad",
        tally.states,
        tally.by_kind,
        plan.inside,
        plan.subsets,
        plan.seed,
        t0.elapsed().as_secs(),
        tally.nfkit_bad,
        tally.fsck_bad,
        tally.control_bad,
        tally.control_problems,
        tally.violation_caught,
        tally.violation_states,
        tally.violation_fsck,
        converge_bad
    )
    .unwrap();
    if let Ok(path) = std::env::var("NFKIT_POWERCUT_REPORT") {
        fs::write(path, &report).unwrap();
    }
    println!("{report}");
    assert!(
        tally.states >= min_states,
        "only {} crash states (want ≥ {min_states})",
        tally.states
    );
    assert_eq!(
        tally.nfkit_bad, 0,
        "crash states where nfkit's files are damaged (see the report)"
    );
    assert!(
        tally.control_bad >= 1,
        "the negative control was never caught: the checker sees nothing"
    );
    assert!(
        tally.violation_caught >= 1,
        "no state that breaks flush order was seen as damaged: the checker sees nothing"
    );
    assert_eq!(
        converge_bad, 0,
        "verify/apply on crash states (see the report)"
    );
}

// ---- the parts ----

fn qemu_io(dir: &Path, cmds: &[&str]) -> (Vec<u8>, Vec<u8>) {
    let data = dir.join("d.img");
    let logf = dir.join("l.log");
    fs::write(&data, vec![0x11u8; 1 << 20]).unwrap();
    fs::write(&logf, b"").unwrap();
    let mut c = Command::new("qemu-io");
    c.arg("--image-opts").arg(format!(
        "driver=blklogwrites,file.driver=file,file.filename={},log.driver=file,log.filename={}",
        data.display(),
        logf.display()
    ));
    for cmd in cmds {
        c.arg("-c").arg(cmd);
    }
    let out = c
        .output()
        .expect("qemu-io (qemu-utils) is needed: the parser is checked against qemu's own logs");
    assert!(
        out.status.success(),
        "qemu-io: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (fs::read(&logf).unwrap(), fs::read(&data).unwrap())
}

/// An op in a few words (data that is one repeated byte as that byte).
fn summary(op: &Op) -> String {
    match op {
        Op::Write { offset, data } => {
            let same = data.iter().all(|&b| b == data[0]);
            let what = if same {
                format!("all {:#04x}", data[0])
            } else {
                "mixed".into()
            };
            format!("write {offset}+{} {what}", data.len())
        }
        Op::Discard { offset, len } => format!("discard {offset}+{len}"),
        Op::Flush => "flush".into(),
        Op::Mark(t) => format!("mark {t}"),
    }
}

#[test]
fn parser_reads_what_qemu_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, data) = qemu_io(
        dir.path(),
        &[
            "write -P 0xab 4096 8192",
            "flush",
            "write -z 512 1024",
            "discard 65536 4096",
            "write -P 0x5c 1536 512",
            "flush",
        ],
    );
    let parsed = log::parse(&bytes).unwrap();
    assert_eq!(parsed.sector_size, 512);
    assert_eq!(
        parsed.ops.iter().map(summary).collect::<Vec<_>>(),
        [
            "write 4096+8192 all 0xab",
            "flush",
            "write 512+1024 all 0x00",
            "discard 65536+4096",
            "write 1536+512 all 0x5c",
            "flush",
            "flush", // qemu flushes the disk when it closes it
        ]
    );
    // Replaying onto the first content gives what qemu left in the file,
    // except the discarded range (qemu's file driver may keep or drop it;
    // the replay zeroes it).
    let mut img = vec![0x11u8; 1 << 20];
    for op in &parsed.ops {
        log::apply(&mut img, op);
    }
    assert!(
        img[..65536] == data[..65536],
        "replay differs before the discard"
    );
    assert!(
        img[69632..] == data[69632..],
        "replay differs after the discard"
    );
}

#[test]
fn parser_refuses_broken_logs() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, _) = qemu_io(dir.path(), &["write -P 1 0 4096", "flush"]);
    let mut bad = bytes.clone();
    bad[0] ^= 1;
    assert!(log::parse(&bad).unwrap_err().contains("magic"));
    let mut bad = bytes.clone();
    bad[512 + 16] = 0x80; // flags of entry 0
    assert!(log::parse(&bad).unwrap_err().contains("flags"));
    let cut = &bytes[..512 * 3];
    assert!(log::parse(cut).unwrap_err().contains("past the end"));
}

fn w(offset: u64) -> Op {
    Op::Write {
        offset,
        data: vec![1; 512],
    }
}

#[test]
fn states_respect_flush_order() {
    // 3 writes | flush | 4 writes | flush | 2 writes (no final flush)
    let ops = vec![
        w(0),
        w(512),
        w(1024),
        Op::Flush,
        w(0),
        w(512),
        w(2048),
        w(4096),
        Op::Flush,
        w(0),
        w(512),
    ];
    let plan = Plan {
        inside: 2,
        subsets: 50,
        seed: 7,
    };
    let states = states::generate(&ops, 0, plan);
    let mut seen = BTreeSet::new();
    for s in &states {
        assert!(
            s.prefix == 0 || matches!(ops[s.prefix - 1], Op::Flush),
            "{s:?}"
        );
        let end = (s.prefix..ops.len())
            .find(|&i| matches!(ops[i], Op::Flush))
            .unwrap_or(ops.len());
        assert!(s.extra.iter().all(|&i| i >= s.prefix && i < end), "{s:?}");
        assert!(s.extra.windows(2).all(|p| p[0] < p[1]), "{s:?}");
        assert!(seen.insert((s.prefix, s.extra.clone())), "duplicate {s:?}");
    }
    // Subsets: the 2^n - 2 proper non-empty ones per interval at most,
    // less those already there as in-order prefixes.
    let subsets = |p: usize| {
        states
            .iter()
            .filter(|s| s.kind == Kind::Subset && s.prefix == p)
            .count()
    };
    assert_eq!(subsets(0), 6 - 2);
    assert_eq!(subsets(4), 14 - 2);
    assert_eq!(subsets(9), 2 - 1);
    // The last interval has no flush after it: its full prefix is a state.
    assert!(states.contains(&CrashState {
        kind: Kind::InsidePrefix,
        prefix: 9,
        extra: vec![9, 10]
    }));
    assert_eq!(states::completed_steps(&[2, 6], 4), 1);
    assert_eq!(states::completed_steps(&[2, 6], 9), 2);
}

fn steps_of(versions: &[&[Option<&str>]]) -> Steps {
    let mut files = BTreeMap::new();
    for (i, v) in versions.iter().enumerate() {
        files.insert(
            format!("f{i}"),
            v.iter().map(|x| x.map(|s| s.as_bytes().to_vec())).collect(),
        );
    }
    Steps {
        names: vec![String::new(); versions[0].len()],
        files,
    }
}

#[test]
fn judge_allows_old_or_new_only() {
    let steps = steps_of(&[
        &[Some("a1"), Some("a2"), Some("a3")],
        &[None, Some("b"), None],
    ]);
    let judge = |k: usize, a: Option<&str>, b: Option<&str>| {
        check::judge(&steps, k, |p| match p {
            "f0" => a.map(|s| s.as_bytes().to_vec()),
            _ => b.map(|s| s.as_bytes().to_vec()),
        })
        .into_iter()
        .map(|f| f.problem)
        .collect::<Vec<_>>()
    };
    assert_eq!(judge(1, Some("a1"), None), vec![]);
    assert_eq!(judge(1, Some("a2"), Some("b")), vec![]);
    assert_eq!(judge(2, Some("a3"), None), vec![]);
    assert_eq!(judge(1, Some(""), None), vec![Problem::Empty]);
    assert_eq!(judge(1, Some("a"), None), vec![Problem::Torn { len: 1 }]);
    assert_eq!(judge(1, None, None), vec![Problem::Missing]);
    assert_eq!(
        judge(2, Some("a1"), Some("b")),
        vec![Problem::OtherStep { step: 0 }]
    );
    // After the last step only its own version counts.
    assert_eq!(judge(3, Some("a3"), Some("b")), vec![Problem::Appeared]);
}

/// fsck and dump on an image built here: a clean filesystem passes and its
/// file reads back; zeroed block group descriptors are damage `fsck`
/// reports (so a crash state that breaks the filesystem cannot pass).
#[test]
fn fsck_and_dump_see_damage() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    fs::create_dir_all(tree.join("etc")).unwrap();
    fs::write(tree.join("etc/a.conf"), "alpha\n").unwrap();
    let img = dir.path().join("fs.img");
    let st = Command::new("mke2fs")
        .args(["-q", "-t", "ext4", "-b", "4096", "-d"])
        .arg(&tree)
        .arg(&img)
        .arg("8M")
        .status()
        .expect("mke2fs (e2fsprogs)");
    assert!(st.success());
    check::fsck(&img).unwrap();
    let out = dir.path().join("dump");
    check::dump(&img, &out).unwrap();
    assert_eq!(
        fs::read_to_string(out.join("etc/a.conf")).unwrap(),
        "alpha\n"
    );
    // Zero the block group descriptors: damage e2fsck must refuse to preen.
    let mut bytes = fs::read(&img).unwrap();
    bytes[4096..8192].fill(0);
    let broken = dir.path().join("broken.img");
    fs::write(&broken, &bytes).unwrap();
    assert!(check::fsck(&broken).is_err());
}

/// The fix the trial led to: a file nfkit removes (apply moving
/// 90-nfkit.conf to 99-zz-nfkit.conf when a later file overrides it) is
/// gone durably: its directory is fsynced after the unlink, as after a
/// rename. Seen through strace (the syscalls, not their timing).
#[test]
fn removal_fsyncs_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    for d in [
        "etc/sysctl.d",
        "etc/modprobe.d",
        "etc/modules-load.d",
        "etc/nfkit",
        "lib/systemd",
        "sbin",
    ] {
        fs::create_dir_all(r.join(d)).unwrap();
    }
    fs::write(r.join("lib/systemd/systemd"), "").unwrap();
    std::os::unix::fs::symlink("/lib/systemd/systemd", r.join("sbin/init")).unwrap();
    fs::write(
        r.join("etc/nfkit/nfkit.toml"),
        "[conntrack]\nmax = 100000\n",
    )
    .unwrap();
    assert_eq!(nfkit(r, &["apply"]).0, 0);
    assert!(r.join("etc/sysctl.d/90-nfkit.conf").is_file());
    fs::write(
        r.join("etc/sysctl.d/95-admin.conf"),
        "net.netfilter.nf_conntrack_max = 5\n",
    )
    .unwrap();
    let trace = r.join("../strace.out");
    let st = Command::new("strace")
        .args([
            "-f",
            "-qq",
            "-e",
            "trace=openat,unlink,unlinkat,fsync,close",
            "-o",
        ])
        .arg(&trace)
        .arg(env!("CARGO_BIN_EXE_nfkit"))
        .arg("--root")
        .arg(r)
        .arg("apply")
        .status()
        .expect("strace is needed for this test (apt: strace)");
    assert!(st.success());
    assert!(!r.join("etc/sysctl.d/90-nfkit.conf").exists());
    let text = fs::read_to_string(&trace).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let unlink = lines
        .iter()
        .position(|l| l.contains("unlink") && l.contains("90-nfkit.conf"))
        .unwrap_or_else(|| panic!("no unlink of 90-nfkit.conf:\n{text}"));
    let sysctl_d = format!("{}\"", r.join("etc/sysctl.d").display());
    let fd = lines[unlink..]
        .iter()
        .find(|l| l.contains("openat(") && l.contains(&sysctl_d))
        .and_then(|l| l.rsplit("= ").next())
        .unwrap_or_else(|| panic!("the directory is not opened after the unlink:\n{text}"))
        .trim()
        .to_string();
    assert!(
        lines[unlink..]
            .iter()
            .any(|l| l.contains(&format!("fsync({fd})"))),
        "no fsync of the directory after the unlink:\n{text}"
    );
}
