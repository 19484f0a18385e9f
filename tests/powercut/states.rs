//! Crash states of a write log: what a disk may hold after a power cut.
//!
//! A flush makes every write completed before it durable; writes after the
//! last flush sit in a volatile cache that may lose any of them. So a crash
//! state is `prefix` (every op before it applied; the op before it is a
//! flush, or it is 0) plus a subset of the writes of the following flush
//! interval, applied in log order:
//! - `FlushPrefix`: the subset is empty (the cut right after a flush);
//! - `InsidePrefix`: the first m writes of the interval (an in-order disk);
//! - `Subset`: a random subset of them (a cache that reorders and drops).

use super::log::Op;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    FlushPrefix,
    InsidePrefix,
    Subset,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrashState {
    pub kind: Kind,
    /// Ops `[0, prefix)` are applied.
    pub prefix: usize,
    /// Indices of writes in `[prefix, next flush)` also applied, ascending.
    pub extra: Vec<usize>,
}

#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// In-order prefixes per interval (evenly spread when it has more writes).
    pub inside: usize,
    /// Random subsets per interval (at most the 2^n - 2 proper non-empty ones).
    pub subsets: usize,
    pub seed: u64,
}

/// xorshift64*: a small deterministic generator (the seed is reported, so a
/// failing state can be generated again).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn is_write(op: &Op) -> bool {
    matches!(op, Op::Write { .. } | Op::Discard { .. })
}

/// Every crash state whose cut lies at or after op `start`, in ascending
/// `prefix` order (the replayer keeps one durable image and moves it
/// forward).
pub fn generate(ops: &[Op], start: usize, plan: Plan) -> Vec<CrashState> {
    let mut rng = Rng::new(plan.seed);
    let mut out = Vec::new();
    // Cut points: after each flush (and the start itself).
    let mut cuts: Vec<usize> = vec![start];
    cuts.extend(
        (start..ops.len())
            .filter(|&i| matches!(ops[i], Op::Flush))
            .map(|i| i + 1),
    );
    cuts.dedup();
    for &prefix in &cuts {
        let end = (prefix..ops.len())
            .find(|&i| matches!(ops[i], Op::Flush))
            .unwrap_or(ops.len());
        let writes: Vec<usize> = (prefix..end).filter(|&i| is_write(&ops[i])).collect();
        out.push(CrashState {
            kind: Kind::FlushPrefix,
            prefix,
            extra: vec![],
        });
        let n = writes.len();
        // In-order prefixes of 1..n writes (n itself = all of the interval,
        // a state the next flush prefix already has unless the log ends).
        let top = if end == ops.len() {
            n
        } else {
            n.saturating_sub(1)
        };
        let count = plan.inside.min(top);
        // Subsets already generated as in-order prefixes are not repeated.
        let mut seen = std::collections::BTreeSet::new();
        for j in 1..=count {
            let m = (j * top).div_ceil(count);
            out.push(CrashState {
                kind: Kind::InsidePrefix,
                prefix,
                extra: writes[..m].to_vec(),
            });
            if m < n {
                seen.insert(writes[..m].to_vec());
            }
        }
        if n >= 2 {
            let proper = if n >= 63 { u64::MAX } else { (1u64 << n) - 2 };
            let want = u64::try_from(plan.subsets)
                .unwrap()
                .min(proper - seen.len() as u64)
                + seen.len() as u64;
            let mut tries = 0;
            while (seen.len() as u64) < want && tries < 64 * plan.subsets {
                tries += 1;
                let pick: Vec<usize> = writes
                    .iter()
                    .copied()
                    .filter(|_| rng.next() & 1 == 1)
                    .collect();
                if pick.is_empty() || pick.len() == n || !seen.insert(pick.clone()) {
                    continue;
                }
                out.push(CrashState {
                    kind: Kind::Subset,
                    prefix,
                    extra: pick,
                });
            }
        }
    }
    out
}

/// Which step a state is in: `marks[k]` is the op index of the write that
/// holds step k's mark (the guest wrote it after step k was complete and
/// fsynced, and flushed after it). A state whose prefix lies past
/// `marks[k]` has all of step k durable. Returns the number of completed
/// steps (0: the setup step itself is still in progress).
pub fn completed_steps(marks: &[usize], prefix: usize) -> usize {
    marks.iter().filter(|&&m| m < prefix).count()
}
