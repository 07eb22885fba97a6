//! Batch jobs (issue 21): the seed's states of containers, tasks and jobs, and what a run
//! does next, from each container slot's attempts so far.
//!
//! Invariants: pure. A task starts only when every task it depends on has *finished*; a slot
//! whose attempt failed is tried again until it failed more than `retry_count` times; a task
//! with a failed (or skipped) dependency is skipped and never starts. The caller records
//! each attempt before it starts it (so a crash never starts one twice) and applies the
//! backoff between attempts.

use std::collections::BTreeMap;

/// One attempt of one container slot: running (no exit yet) or exited with a code.
pub type Attempt = Option<i64>;

/// The seed's task and job states (a container is Running, Finished or Failed alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Not started: waiting for the tasks it depends on.
    Waiting,
    Running,
    Finished,
    Failed,
    /// Never started: a task it depends on failed.
    Skipped,
}

/// A task as a run needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub name: String,
    /// Containers it is split over (`scale`).
    pub slots: u32,
    pub depends: Vec<String>,
    pub retry_count: u32,
}

/// What to do next in a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Start attempt `attempt` (1 = the first) of `task`'s container `slot`.
    Start {
        task: String,
        slot: u32,
        attempt: u32,
    },
    /// The task will never start: `because` failed or was skipped.
    Skip { task: String, because: String },
}

/// A slot's state from its attempts.
fn slot_state(attempts: &[Attempt], retry_count: u32) -> State {
    let failures = attempts
        .iter()
        .filter(|a| matches!(a, Some(c) if *c != 0))
        .count() as u32;
    match attempts.last() {
        None => State::Waiting,
        Some(None) => State::Running,
        Some(Some(0)) => State::Finished,
        Some(Some(_)) if failures > retry_count => State::Failed,
        // Failed, with a retry to come.
        Some(Some(_)) => State::Running,
    }
}

/// A task's state from its slots' attempts (`history[slot - 1]`).
pub fn task_state(task: &Task, history: &[Vec<Attempt>]) -> State {
    let states: Vec<State> = (0..task.slots as usize)
        .map(|i| {
            slot_state(
                history.get(i).map(Vec::as_slice).unwrap_or(&[]),
                task.retry_count,
            )
        })
        .collect();
    if states.contains(&State::Failed) {
        State::Failed
    } else if states.iter().all(|s| *s == State::Finished) {
        State::Finished
    } else if states.iter().all(|s| *s == State::Waiting) {
        State::Waiting
    } else {
        State::Running
    }
}

/// The job's state from its tasks' (skipped ones included): Failed as soon as a task failed
/// and nothing runs any more, Finished when all finished, else Running.
pub fn job_state(states: &BTreeMap<String, State>) -> State {
    let any = |s: State| states.values().any(|x| *x == s);
    if states.values().all(|s| *s == State::Finished) {
        State::Finished
    } else if any(State::Failed) && !any(State::Running) {
        State::Failed
    } else {
        State::Running
    }
}

/// The steps a run takes now, given every task's slots' attempts, and each task's state.
pub fn next_steps(
    tasks: &[Task],
    history: &BTreeMap<String, Vec<Vec<Attempt>>>,
) -> (Vec<Step>, BTreeMap<String, State>) {
    let empty = Vec::new();
    let mut states: BTreeMap<String, State> = BTreeMap::new();
    // Tasks in dependency order (the template refuses cycles): settle the states first.
    let mut pending: Vec<&Task> = tasks.iter().collect();
    let mut steps = Vec::new();
    while !pending.is_empty() {
        let before = pending.len();
        pending.retain(|t| {
            if !t.depends.iter().all(|d| states.contains_key(d)) {
                return true;
            }
            let h = history.get(&t.name).unwrap_or(&empty);
            let mut s = task_state(t, h);
            if s == State::Waiting {
                let deps: Vec<(&String, State)> = t
                    .depends
                    .iter()
                    .map(|d| (d, states.get(d).copied().unwrap_or(State::Waiting)))
                    .collect();
                if let Some((d, _)) = deps
                    .iter()
                    .find(|(_, s)| matches!(s, State::Failed | State::Skipped))
                {
                    s = State::Skipped;
                    steps.push(Step::Skip {
                        task: t.name.clone(),
                        because: (*d).clone(),
                    });
                } else if deps.iter().all(|(_, s)| *s == State::Finished) {
                    for slot in 1..=t.slots {
                        steps.push(Step::Start {
                            task: t.name.clone(),
                            slot,
                            attempt: 1,
                        });
                    }
                    s = State::Running;
                }
            } else if s == State::Running {
                // Slots whose last attempt failed with retries left: the next attempt.
                for slot in 1..=t.slots {
                    let a = h.get(slot as usize - 1).map(Vec::as_slice).unwrap_or(&[]);
                    if matches!(a.last(), Some(Some(c)) if *c != 0)
                        && slot_state(a, t.retry_count) == State::Running
                    {
                        steps.push(Step::Start {
                            task: t.name.clone(),
                            slot,
                            attempt: a.len() as u32 + 1,
                        });
                    }
                }
            }
            states.insert(t.name.clone(), s);
            false
        });
        if pending.len() == before {
            // A dependency on no task of the job (the template checks names): not startable.
            for t in pending.drain(..) {
                states.insert(t.name.clone(), State::Waiting);
            }
        }
    }
    (steps, states)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(name: &str, slots: u32, depends: &[&str]) -> Task {
        Task {
            name: name.into(),
            slots,
            depends: depends.iter().map(|d| d.to_string()).collect(),
            retry_count: 3,
        }
    }

    fn starts(steps: &[Step]) -> Vec<(String, u32, u32)> {
        steps
            .iter()
            .filter_map(|s| match s {
                Step::Start {
                    task,
                    slot,
                    attempt,
                } => Some((task.clone(), *slot, *attempt)),
                Step::Skip { .. } => None,
            })
            .collect()
    }

    /// The seed's batch shape: s1 over 3 containers, s2 over 2 after it.
    #[test]
    fn a_task_starts_only_when_every_dependency_finished() {
        let tasks = [task("s1", 3, &[]), task("s2", 2, &["s1"])];
        let (steps, states) = next_steps(&tasks, &BTreeMap::new());
        assert_eq!(
            starts(&steps),
            [
                ("s1".into(), 1, 1),
                ("s1".into(), 2, 1),
                ("s1".into(), 3, 1)
            ]
        );
        assert_eq!(states["s2"], State::Waiting);
        // Two of three finished, one still running: s2 waits.
        let h = BTreeMap::from([(
            "s1".to_string(),
            vec![vec![Some(0)], vec![Some(0)], vec![None]],
        )]);
        let (steps, states) = next_steps(&tasks, &h);
        assert!(steps.is_empty(), "{steps:?}");
        assert_eq!(
            (states["s1"], states["s2"]),
            (State::Running, State::Waiting)
        );
        // All finished: s2 starts; then the job finishes with it.
        let h = BTreeMap::from([("s1".to_string(), vec![vec![Some(0)]; 3])]);
        let (steps, _) = next_steps(&tasks, &h);
        assert_eq!(starts(&steps), [("s2".into(), 1, 1), ("s2".into(), 2, 1)]);
        let h = BTreeMap::from([
            ("s1".to_string(), vec![vec![Some(0)]; 3]),
            ("s2".to_string(), vec![vec![Some(0)]; 2]),
        ]);
        let (steps, states) = next_steps(&tasks, &h);
        assert!(steps.is_empty());
        assert_eq!(job_state(&states), State::Finished);
    }

    #[test]
    fn a_failing_slot_is_retried_then_the_task_fails_and_its_dependants_are_skipped() {
        let tasks = [
            task("s1", 2, &[]),
            task("s2", 1, &["s1"]),
            task("s3", 1, &["s2"]),
        ];
        // Slot 2 failed once: its second attempt.
        let h = BTreeMap::from([("s1".to_string(), vec![vec![Some(0)], vec![Some(1)]])]);
        let (steps, states) = next_steps(&tasks, &h);
        assert_eq!(starts(&steps), [("s1".into(), 2, 2)]);
        assert_eq!(states["s1"], State::Running);
        assert_eq!(job_state(&states), State::Running);
        // retry_count 3: four failures fail it; s2 and s3 are skipped, the job failed.
        let h = BTreeMap::from([(
            "s1".to_string(),
            vec![vec![Some(0)], vec![Some(1), Some(2), Some(1), Some(137)]],
        )]);
        let (steps, states) = next_steps(&tasks, &h);
        assert_eq!(
            steps,
            [
                Step::Skip {
                    task: "s2".into(),
                    because: "s1".into()
                },
                Step::Skip {
                    task: "s3".into(),
                    because: "s2".into()
                }
            ]
        );
        assert_eq!(
            (states["s1"], states["s2"], states["s3"]),
            (State::Failed, State::Skipped, State::Skipped)
        );
        assert_eq!(job_state(&states), State::Failed);
        // A success after failures finishes the slot.
        let h = BTreeMap::from([(
            "s1".to_string(),
            vec![vec![Some(0)], vec![Some(1), Some(0)]],
        )]);
        assert_eq!(next_steps(&tasks, &h).1["s1"], State::Finished);
    }

    #[test]
    fn several_dependencies_all_finish_first() {
        let tasks = [
            task("a", 1, &[]),
            task("b", 1, &[]),
            task("c", 1, &["a", "b"]),
        ];
        let h = BTreeMap::from([
            ("a".to_string(), vec![vec![Some(0)]]),
            ("b".to_string(), vec![vec![None]]),
        ]);
        assert!(starts(&next_steps(&tasks, &h).0).is_empty());
        let h = BTreeMap::from([
            ("a".to_string(), vec![vec![Some(0)]]),
            ("b".to_string(), vec![vec![Some(0)]]),
        ]);
        assert_eq!(starts(&next_steps(&tasks, &h).0), [("c".into(), 1, 1)]);
    }
}
