//! Judging a crash state: the filesystem (journal replay as at boot, then a
//! full read-only check) and every file the steps recorded (old or new,
//! never torn, never empty, never missing once it existed).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::log::{self, Op};
use super::states::CrashState;

/// The versions of every file, per step, as the guest recorded them
/// (`steps/NN/tree/...`; a path missing from a step's tree is absent then).
pub struct Steps {
    pub names: Vec<String>,
    /// Relative path (`etc/...`) → content after each step (`None`: absent).
    pub files: BTreeMap<String, Vec<Option<Vec<u8>>>>,
}

fn walk(dir: &Path, rel: &str, out: &mut BTreeMap<String, Vec<u8>>) {
    for e in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let e = e.unwrap();
        let name = format!("{rel}{}", e.file_name().to_string_lossy());
        let t = e.file_type().unwrap();
        if t.is_dir() {
            walk(&e.path(), &format!("{name}/"), out);
        } else if t.is_file() {
            out.insert(name, fs::read(e.path()).unwrap());
        }
    }
}

/// Regular files under `dir`, by relative path.
pub fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    if dir.is_dir() {
        walk(dir, "", &mut out);
    }
    out
}

impl Steps {
    pub fn load(dir: &Path) -> Steps {
        let mut numbered: Vec<(usize, PathBuf)> = fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .filter_map(|p| Some((p.file_name()?.to_str()?.parse().ok()?, p)))
            .collect();
        numbered.sort();
        for (i, (n, p)) in numbered.iter().enumerate() {
            assert_eq!(
                i,
                *n,
                "steps are numbered 0.. without gaps: {}",
                p.display()
            );
        }
        let trees: Vec<_> = numbered
            .iter()
            .map(|(_, p)| tree(&p.join("tree")))
            .collect();
        let mut files = BTreeMap::new();
        for t in &trees {
            for path in t.keys() {
                files.insert(
                    path.clone(),
                    trees.iter().map(|t| t.get(path).cloned()).collect(),
                );
            }
        }
        let names = numbered
            .iter()
            .map(|(_, p)| {
                fs::read_to_string(p.join("name"))
                    .unwrap_or_default()
                    .trim()
                    .to_string()
            })
            .collect();
        Steps { names, files }
    }

    pub fn count(&self) -> usize {
        self.names.len()
    }

    /// Content of `path` after step `k`.
    pub fn version(&self, path: &str, k: usize) -> Option<&[u8]> {
        self.files[path][k].as_deref()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Absent, though it existed after the last completed step or will.
    Missing,
    /// Present and empty, though no allowed version is empty.
    Empty,
    /// Content that is no step's version at all.
    Torn { len: usize },
    /// An older or later step's version, not one of the allowed two.
    OtherStep { step: usize },
    /// Present though both allowed versions are absent.
    Appeared,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub path: String,
    pub problem: Problem,
}

/// The findings for one state in which `completed` steps are durable (the
/// last completed one is `completed - 1`, the one in progress `completed`):
/// each file must be its version after one of those two steps. `read` gives
/// a path's content in the crash state.
pub fn judge(
    steps: &Steps,
    completed: usize,
    read: impl Fn(&str) -> Option<Vec<u8>>,
) -> Vec<Finding> {
    assert!(completed >= 1, "the setup step is not judged");
    let old = completed - 1;
    let allowed: Vec<usize> = if completed < steps.count() {
        vec![old, completed]
    } else {
        vec![old]
    };
    let mut out = Vec::new();
    for (path, versions) in &steps.files {
        let got = read(path);
        if allowed.iter().any(|&k| versions[k] == got) {
            continue;
        }
        let problem = match &got {
            None => Problem::Missing,
            Some(_) if allowed.iter().all(|&k| versions[k].is_none()) => Problem::Appeared,
            Some(c) if c.is_empty() => Problem::Empty,
            Some(c) => match versions.iter().position(|v| v.as_deref() == Some(c)) {
                Some(step) => Problem::OtherStep { step },
                None => Problem::Torn { len: c.len() },
            },
        };
        out.push(Finding {
            path: path.clone(),
            problem,
        });
    }
    out
}

/// Keeps one durable image (every op before `applied`) and writes crash
/// states to files: only blocks ever non-zero are written (the rest stay
/// holes), so a state costs what the log touched, not the disk size.
pub struct Replayer<'a> {
    ops: &'a [Op],
    durable: Vec<u8>,
    applied: usize,
    touched: BTreeSet<u64>,
}

const BLOCK: u64 = 4096;

fn blocks(offset: u64, len: u64) -> std::ops::Range<u64> {
    offset / BLOCK..(offset + len).div_ceil(BLOCK)
}

impl<'a> Replayer<'a> {
    pub fn new(base: Vec<u8>, ops: &'a [Op]) -> Self {
        let touched = (0..base.len() as u64 / BLOCK)
            .filter(|b| {
                let s = usize::try_from(b * BLOCK).unwrap();
                base[s..s + BLOCK as usize].iter().any(|&x| x != 0)
            })
            .collect();
        Replayer {
            ops,
            durable: base,
            applied: 0,
            touched,
        }
    }

    fn note(&mut self, op: &Op) {
        match op {
            Op::Write { offset, data } => self.touched.extend(blocks(*offset, data.len() as u64)),
            Op::Discard { offset, len } => self.touched.extend(blocks(*offset, *len)),
            Op::Flush | Op::Mark(_) => {}
        }
    }

    /// Moves the durable image forward to `prefix` (never back).
    pub fn advance(&mut self, prefix: usize) {
        assert!(prefix >= self.applied, "states come in prefix order");
        for i in self.applied..prefix {
            let op = &self.ops[i];
            log::apply(&mut self.durable, op);
            self.note(op);
        }
        self.applied = prefix;
    }

    pub fn durable(&self) -> &[u8] {
        &self.durable
    }

    /// Writes `state` to `path` (a fresh sparse file).
    pub fn materialize(&mut self, state: &CrashState, path: &Path) {
        self.advance(state.prefix);
        let _ = fs::remove_file(path);
        let f = fs::File::create(path).unwrap();
        f.set_len(self.durable.len() as u64).unwrap();
        let mut run: Option<(u64, u64)> = None;
        let flush = |r: (u64, u64)| {
            let (s, e) = (
                usize::try_from(r.0 * BLOCK).unwrap(),
                usize::try_from(r.1 * BLOCK).unwrap(),
            );
            f.write_all_at(&self.durable[s..e.min(self.durable.len())], r.0 * BLOCK)
                .unwrap();
        };
        for &b in &self.touched {
            run = match run {
                Some((s, e)) if e == b => Some((s, b + 1)),
                Some(r) => {
                    flush(r);
                    Some((b, b + 1))
                }
                None => Some((b, b + 1)),
            };
        }
        if let Some(r) = run {
            flush(r);
        }
        for &i in &state.extra {
            match &self.ops[i] {
                Op::Write { offset, data } => f.write_all_at(data, *offset).unwrap(),
                Op::Discard { offset, len } => f
                    .write_all_at(&vec![0; usize::try_from(*len).unwrap()], *offset)
                    .unwrap(),
                Op::Flush | Op::Mark(_) => panic!("extra op {i} is not a write"),
            }
        }
        f.sync_all().ok();
    }
}

fn run(cmd: &mut Command) -> (i32, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (e2fsprogs installed?)"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// What a boot does with the disk (`e2fsck -p`: journal replay, orphan
/// cleanup, only safe fixes), then a full read-only check that must find
/// nothing. Err: what fsck said.
pub fn fsck(image: &Path) -> Result<(), String> {
    let (code, text) = run(Command::new("e2fsck").arg("-p").arg(image));
    // 0 clean, 1 errors corrected (the journal replayed), 2 reboot wanted.
    if code > 2 {
        return Err(format!("e2fsck -p exited {code}: {}", text.trim()));
    }
    let (code, text) = run(Command::new("e2fsck").args(["-f", "-n"]).arg(image));
    if code != 0 {
        return Err(format!("e2fsck -fn exited {code}: {}", text.trim()));
    }
    Ok(())
}

/// The whole filesystem's tree copied out with debugfs (no mount).
pub fn dump(image: &Path, dest: &Path) -> Result<(), String> {
    let _ = fs::remove_dir_all(dest);
    fs::create_dir_all(dest).unwrap();
    let (code, text) = run(Command::new("debugfs")
        .arg("-R")
        .arg(format!("rdump / {}", dest.display()))
        .arg(image));
    let complaints: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("debugfs ") && !l.trim().is_empty())
        .collect();
    if code != 0 || !complaints.is_empty() {
        return Err(format!(
            "debugfs rdump exited {code}: {}",
            complaints.join("; ")
        ));
    }
    Ok(())
}
