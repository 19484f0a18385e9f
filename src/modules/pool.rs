//! The parallel loader's executor: a small pool of threads that insert the
//! nodes of a [`Graph`] as [`Schedule`] hands them out.
//!
//! What an insert is belongs to the [`Inserter`] each worker makes for
//! itself on its own thread (libkmod contexts are not thread-safe: the
//! real inserter opens one context per worker, see `load.rs`); tests use a
//! fake one. One mutex guards the schedule and the results; a worker holds
//! it only to take a node and to record its end, never while inserting.

use std::sync::{Condvar, Mutex, PoisonError};

use super::schedule::{Graph, NodeState, Schedule};

/// Inserts one node's module. Made once per worker thread.
pub(crate) trait Inserter {
    /// What the executor hands over for one node.
    type Step: Sync;
    /// What an insert reports (kept for the caller).
    type Done: Send;
    /// `Ok` when the module is in the kernel afterwards.
    fn insert(&mut self, step: &Self::Step) -> Result<Self::Done, Self::Done>;
}

/// How one node ended.
#[derive(Debug)]
pub(crate) enum NodeOutcome<D> {
    /// Inserted (or found in the kernel).
    Done(D),
    /// The insert failed.
    Failed(D),
    /// Not attempted: `cause` (a node) failed and this one needs it.
    Blocked {
        /// The failed node.
        cause: usize,
    },
}

/// The end of a pool run.
#[derive(Debug)]
pub(crate) struct PoolRun<D> {
    /// Per node, in node order.
    pub outcomes: Vec<NodeOutcome<D>>,
    /// Nodes in the order they were handed out.
    pub started: Vec<usize>,
    /// Worker threads used (0: ran on the calling thread).
    pub threads: usize,
}

struct Shared<'g, D> {
    schedule: Schedule<'g>,
    done: Vec<Option<Result<D, D>>>,
    started: Vec<usize>,
}

/// Inserts every node of `graph` (`steps[i]` for node `i`) on up to `jobs`
/// threads, each with its own inserter from `new_inserter`. If no thread
/// can be started, the calling thread does the work.
pub(crate) fn run<I, F>(
    graph: &Graph,
    steps: &[I::Step],
    jobs: usize,
    new_inserter: F,
) -> PoolRun<I::Done>
where
    I: Inserter,
    F: Fn() -> I + Sync,
{
    assert_eq!(graph.len(), steps.len(), "one step per node");
    let shared = Mutex::new(Shared {
        schedule: Schedule::new(graph),
        done: (0..graph.len()).map(|_| None).collect(),
        started: Vec::new(),
    });
    let wake = Condvar::new();
    let workers = jobs.clamp(1, graph.len().max(1));
    let mut threads = 0;
    if !graph.is_empty() {
        std::thread::scope(|scope| {
            for n in 0..workers {
                let spawned = std::thread::Builder::new()
                    .name(format!("nfkit-load-{n}"))
                    .spawn_scoped(scope, || work(&shared, &wake, steps, &new_inserter));
                if spawned.is_ok() {
                    threads += 1;
                }
            }
            if threads == 0 {
                work(&shared, &wake, steps, &new_inserter);
            }
        });
    }
    let shared = shared.into_inner().unwrap_or_else(PoisonError::into_inner);
    let outcomes = shared
        .done
        .into_iter()
        .enumerate()
        .map(|(i, d)| match (d, shared.schedule.state(i)) {
            (Some(Ok(d)), _) => NodeOutcome::Done(d),
            (Some(Err(d)), _) => NodeOutcome::Failed(d),
            (None, NodeState::Blocked { cause }) => NodeOutcome::Blocked { cause },
            (None, s) => unreachable!("node {i} ended {s:?} without a result"),
        })
        .collect();
    PoolRun {
        outcomes,
        started: shared.started,
        threads,
    }
}

/// One worker: takes ready nodes until every node is final.
fn work<I, F>(shared: &Mutex<Shared<'_, I::Done>>, wake: &Condvar, steps: &[I::Step], new: &F)
where
    I: Inserter,
    F: Fn() -> I,
{
    let lock = || shared.lock().unwrap_or_else(PoisonError::into_inner);
    let mut inserter: Option<I> = None;
    loop {
        let node = {
            let mut s = lock();
            loop {
                if let Some(i) = s.schedule.next() {
                    s.started.push(i);
                    break Some(i);
                }
                if s.schedule.finished() {
                    break None;
                }
                s = wake.wait(s).unwrap_or_else(PoisonError::into_inner);
            }
        };
        let Some(i) = node else {
            wake.notify_all();
            return;
        };
        let result = inserter.get_or_insert_with(new).insert(&steps[i]);
        let mut s = lock();
        s.schedule.finish(i, result.is_ok());
        s.done[i] = Some(result);
        drop(s);
        wake.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::super::schedule::tests::{graph_of, load_case};
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// A fake kernel: records what is "loaded", checks that every hard
    /// prerequisite is loaded at insert time, sleeps a little, fails the
    /// modules it was told to.
    struct Fake<'a> {
        loaded: &'a Mutex<Vec<String>>,
        fails: &'a BTreeSet<String>,
        in_flight: &'a AtomicUsize,
        most: &'a AtomicUsize,
    }

    struct Step {
        name: String,
        needs: Vec<String>,
        delay_us: u64,
    }

    impl Inserter for Fake<'_> {
        type Step = Step;
        type Done = String;
        fn insert(&mut self, step: &Step) -> Result<String, String> {
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(now, Ordering::SeqCst);
            {
                let loaded = self.loaded.lock().unwrap();
                for n in &step.needs {
                    assert!(loaded.contains(n), "{} inserted before {n}", step.name);
                }
            }
            std::thread::sleep(Duration::from_micros(step.delay_us));
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            if self.fails.contains(&step.name) {
                return Err(step.name.clone());
            }
            let mut loaded = self.loaded.lock().unwrap();
            assert!(!loaded.contains(&step.name), "{} twice", step.name);
            loaded.push(step.name.clone());
            Ok(step.name.clone())
        }
    }

    fn fake_run(
        g: &Graph,
        jobs: usize,
        fails: &BTreeSet<String>,
        delays: &[u64],
    ) -> (Vec<String>, PoolRun<String>, usize) {
        let steps: Vec<Step> = (0..g.len())
            .map(|i| Step {
                name: g.name(i).to_owned(),
                needs: g
                    .prereqs(i)
                    .iter()
                    .filter(|e| e.1 == super::super::schedule::Edge::Hard)
                    .map(|e| g.name(e.0).to_owned())
                    .collect(),
                delay_us: delays[i % delays.len()],
            })
            .collect();
        let loaded = Mutex::new(Vec::new());
        let in_flight = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let r = run(g, &steps, jobs, || Fake {
            loaded: &loaded,
            fails,
            in_flight: &in_flight,
            most: &most,
        });
        (loaded.into_inner().unwrap(), r, most.into_inner())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Threads, random delays, injected failures: the set inserted is
        /// the one-at-a-time loader's set, nothing twice, prerequisites
        /// first (checked by the fake at insert time), never more than
        /// `jobs` at once.
        #[test]
        fn threaded_set_equals_sequential_set(
            (u, req, fail_idx) in load_case(),
            jobs in 2usize..5,
            delays in proptest::collection::vec(0u64..300, 1..8),
        ) {
            let g = graph_of(&u, &req);
            let fails: BTreeSet<String> =
                fail_idx.iter().map(|&i| super::super::schedule::tests::mname(i)).collect();
            let (seq_loaded, seq_run, seq_most) = fake_run(&g, 1, &fails, &[0]);
            let (par_loaded, par_run, par_most) = fake_run(&g, jobs, &fails, &delays);
            prop_assert_eq!(seq_most, 1);
            prop_assert!(par_most <= jobs);
            // jobs = 1: the sequential order exactly.
            let expected: Vec<String> = (0..g.len())
                .filter(|&i| !matches!(seq_run.outcomes[i], NodeOutcome::Blocked { .. }))
                .filter(|&i| !fails.contains(g.name(i)))
                .map(|i| g.name(i).to_owned())
                .collect();
            prop_assert_eq!(&seq_loaded, &expected);
            let a: BTreeSet<&String> = seq_loaded.iter().collect();
            let b: BTreeSet<&String> = par_loaded.iter().collect();
            prop_assert_eq!(a, b);
            prop_assert_eq!(par_loaded.len(), b_len(&par_loaded));
            // Same per-node outcome kinds.
            for i in 0..g.len() {
                let kind = |o: &NodeOutcome<String>| match o {
                    NodeOutcome::Done(_) => 0,
                    NodeOutcome::Failed(_) => 1,
                    NodeOutcome::Blocked { .. } => 2,
                };
                prop_assert_eq!(kind(&seq_run.outcomes[i]), kind(&par_run.outcomes[i]));
            }
            prop_assert!(par_run.threads >= 1 && par_run.threads <= jobs);
        }
    }

    fn b_len(v: &[String]) -> usize {
        v.iter().collect::<BTreeSet<_>>().len()
    }

    #[test]
    fn empty_graph_starts_no_thread() {
        let g = graph_of(
            &super::super::schedule::tests::Universe {
                deps: vec![vec![]],
                pre: vec![vec![]],
                post: vec![vec![]],
            },
            &[],
        );
        let (loaded, r, _) = fake_run(&g, 4, &BTreeSet::new(), &[0]);
        assert!(loaded.is_empty() && r.outcomes.is_empty());
        assert_eq!(r.threads, 0);
    }

    /// Independent modules really overlap with several workers.
    #[test]
    fn independent_modules_overlap() {
        let u = super::super::schedule::tests::Universe {
            deps: vec![vec![]; 4],
            pre: vec![vec![]; 4],
            post: vec![vec![]; 4],
        };
        let g = graph_of(&u, &[0, 1, 2, 3]);
        let (_, _, most) = fake_run(&g, 4, &BTreeSet::new(), &[20_000]);
        assert!(most >= 2, "at most {most} at once");
    }
}
