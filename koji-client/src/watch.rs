//! Watching a task tree like `koji watch-task`.
//!
//! The watcher polls the unfinished tasks of the tree (`getTaskInfo`), discovers children as they
//! appear (`getTaskChildren`), reports each new task and state change, and ends when every task is
//! CLOSED, CANCELED or FAILED. Then it fetches every task's result or fault in one `multiCall`.
//! Every wait has a deadline; on expiry the error names the states last seen.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::Stream;
use tokio::time::Instant;

use crate::client::{Client, MultiCall};
use crate::error::{Error, Fault, Result};
use crate::tasks::{TaskId, TaskInfo, TaskState, entry_result};

/// A task appeared or changed state.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TaskEvent {
    /// The task as last seen.
    pub task: TaskInfo,
    /// Its previous state; `None` when the task was just discovered.
    pub previous: Option<TaskState>,
}

/// How a watch behaves.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WatchOptions {
    /// Give up after this long (default: 6 hours, image builds are slow).
    pub deadline: Duration,
    /// Time between polls (default 15 s; the CLI's is 6 s).
    pub poll_interval: Duration,
    /// Fetch each task's result or fault at the end (default on).
    pub fetch_results: bool,
    /// Cancel the root task if the watch is dropped before the tree finished (default off).
    pub cancel_on_drop: bool,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            deadline: Duration::from_secs(6 * 3600),
            poll_interval: Duration::from_secs(15),
            fetch_results: true,
            cancel_on_drop: false,
        }
    }
}

impl WatchOptions {
    /// Set the deadline.
    pub fn deadline(mut self, d: Duration) -> Self {
        self.deadline = d;
        self
    }
    /// Set the poll interval.
    pub fn poll_interval(mut self, d: Duration) -> Self {
        self.poll_interval = d;
        self
    }
    /// Whether to fetch results at the end.
    pub fn fetch_results(mut self, on: bool) -> Self {
        self.fetch_results = on;
        self
    }
    /// Whether dropping an unfinished watch cancels the task.
    pub fn cancel_on_drop(mut self, on: bool) -> Self {
        self.cancel_on_drop = on;
        self
    }
}

/// The finished tree.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WatchOutcome {
    /// The watched task.
    pub root: TaskId,
    /// Every task of the tree, in its final state.
    pub tasks: BTreeMap<TaskId, TaskInfo>,
    /// Each task's result, or its fault (empty when results were not fetched).
    pub results: BTreeMap<TaskId, std::result::Result<serde_json::Value, Fault>>,
}

impl WatchOutcome {
    /// The root task's final info.
    pub fn root_info(&self) -> Option<&TaskInfo> {
        self.tasks.get(&self.root)
    }

    /// Whether the root task CLOSED.
    pub fn succeeded(&self) -> bool {
        self.root_info().is_some_and(|t| t.state == TaskState::Closed)
    }

    /// `Ok(self)` when the root closed, else [`Error::TaskFailed`] with the first fault found
    /// (the root's, or a failed child's).
    pub fn into_result(self) -> Result<Self> {
        if self.succeeded() {
            return Ok(self);
        }
        let root = self.root_info().cloned();
        let fault = self
            .results
            .get(&self.root)
            .and_then(|r| r.as_ref().err().cloned())
            .or_else(|| self.results.values().find_map(|r| r.as_ref().err().cloned()));
        Err(Error::TaskFailed {
            task_id: self.root,
            method: root.as_ref().map(|t| t.method.clone()).unwrap_or_default(),
            state: root.map_or(TaskState::Unknown(-1), |t| t.state),
            fault,
        })
    }

    /// Children of `method` (e.g. `createImage`), with their results.
    pub fn children_of_method<'a>(&'a self, method: &'a str) -> impl Iterator<Item = &'a TaskInfo> + 'a {
        self.tasks.values().filter(move |t| t.method == method)
    }
}

/// Watches one task tree. Build with [`Client::watch_task`].
#[derive(Debug)]
pub struct TaskWatcher {
    client: Client,
    root: TaskId,
    opts: WatchOptions,
    tasks: BTreeMap<TaskId, TaskInfo>,
    started: Instant,
    first_poll: bool,
    finished: bool,
}

impl Client {
    /// Watch `task` and its descendants.
    ///
    /// ```no_run
    /// # async fn demo(koji: koji_client::Client) -> koji_client::Result<()> {
    /// use std::time::Duration;
    /// use koji_client::{TaskId, WatchOptions};
    /// let outcome = koji
    ///     .watch_task(TaskId(4242), WatchOptions::default().deadline(Duration::from_secs(3 * 3600)))
    ///     .run(|ev| println!("{} {} -> {}", ev.task.id, ev.task.method, ev.task.state))
    ///     .await?
    ///     .into_result()?;
    /// # Ok(()) }
    /// ```
    pub fn watch_task(&self, task: TaskId, opts: WatchOptions) -> TaskWatcher {
        TaskWatcher {
            client: self.clone(),
            root: task,
            opts,
            tasks: BTreeMap::new(),
            started: Instant::now(),
            first_poll: true,
            finished: false,
        }
    }
}

impl TaskWatcher {
    fn all_finished(&self) -> bool {
        !self.tasks.is_empty() && self.tasks.values().all(|t| t.state.is_finished())
    }

    fn summary(&self) -> String {
        if self.tasks.is_empty() {
            return "no answer yet".into();
        }
        // Method names come from the hub, and a tree can hold thousands of tasks: bounded as peer text.
        crate::redact::peer_text(
            &self
                .tasks
                .values()
                .map(|t| format!("{} {} {}", t.id, t.method, t.state))
                .collect::<Vec<_>>()
                .join(", "),
        )
    }

    /// One round: refresh unfinished tasks, discover children. Returns what changed.
    pub async fn poll(&mut self) -> Result<Vec<TaskEvent>> {
        let mut events = Vec::new();
        let to_refresh: Vec<TaskId> = if self.first_poll {
            vec![self.root]
        } else {
            self.tasks
                .values()
                .filter(|t| !t.state.is_finished())
                .map(|t| t.id)
                .collect()
        };
        for id in &to_refresh {
            let info = self
                .client
                .get_task_info_opt(*id, self.first_poll && *id == self.root)
                .await?;
            let previous = self.tasks.get(id).map(|t| t.state);
            if previous != Some(info.state) {
                events.push(TaskEvent {
                    task: info.clone(),
                    previous,
                });
            }
            self.tasks.insert(*id, info);
        }
        self.first_poll = false;
        // Children appear while a parent runs; look under every task that was unfinished this round.
        for id in &to_refresh {
            for child in self.client.get_task_children(*id).await? {
                if !self.tasks.contains_key(&child.id) {
                    let cid = child.id;
                    events.push(TaskEvent {
                        task: child.clone(),
                        previous: None,
                    });
                    self.tasks.insert(cid, child);
                }
            }
        }
        Ok(events)
    }

    async fn fetch_results(&self) -> Result<BTreeMap<TaskId, std::result::Result<serde_json::Value, Fault>>> {
        let ids: Vec<TaskId> = self.tasks.keys().copied().collect();
        let mut batch = MultiCall::new();
        for id in &ids {
            batch = batch.add("getTaskResult", vec![id.arg()], vec![]);
        }
        let answers = self.client.multicall(batch).await?;
        Ok(ids.into_iter().zip(answers.into_iter().map(entry_result)).collect())
    }

    /// Watch until the tree finishes, calling `on_event` for each change.
    pub async fn run(mut self, mut on_event: impl FnMut(&TaskEvent)) -> Result<WatchOutcome> {
        loop {
            for ev in self.poll().await? {
                on_event(&ev);
            }
            if self.all_finished() {
                break;
            }
            self.sleep_or_timeout().await?;
        }
        self.finished = true;
        let results = if self.opts.fetch_results {
            self.fetch_results().await?
        } else {
            BTreeMap::new()
        };
        Ok(WatchOutcome {
            root: self.root,
            tasks: std::mem::take(&mut self.tasks),
            results,
        })
    }

    async fn sleep_or_timeout(&self) -> Result<()> {
        let elapsed = self.started.elapsed();
        if elapsed >= self.opts.deadline {
            return Err(Error::Timeout {
                what: format!("koji task {} to finish", self.root),
                waited: elapsed,
                last_state: self.summary(),
            });
        }
        let left = self.opts.deadline - elapsed;
        tokio::time::sleep(self.opts.poll_interval.min(left)).await;
        Ok(())
    }

    /// The same watch as a stream of events; it ends when the tree finishes (results are not fetched;
    /// call [`Client::get_task_result`] for the ones you need).
    pub fn into_stream(self) -> impl Stream<Item = Result<TaskEvent>> {
        // (watcher, pending events, polled at least once, ended by an error)
        let state = (self, std::collections::VecDeque::<TaskEvent>::new(), false, false);
        futures::stream::unfold(state, |(mut w, mut queue, mut polled, ended)| async move {
            if ended {
                return None;
            }
            loop {
                if let Some(ev) = queue.pop_front() {
                    return Some((Ok(ev), (w, queue, polled, false)));
                }
                if polled && w.all_finished() {
                    return None;
                }
                if polled && let Err(e) = w.sleep_or_timeout().await {
                    return Some((Err(e), (w, queue, polled, true)));
                }
                match w.poll().await {
                    Ok(evs) => {
                        queue.extend(evs);
                        polled = true;
                    }
                    Err(e) => return Some((Err(e), (w, queue, polled, true))),
                }
            }
        })
    }
}

impl Drop for TaskWatcher {
    fn drop(&mut self) {
        if !self.opts.cancel_on_drop || self.finished || self.all_finished() {
            return;
        }
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let client = self.client.clone();
            let root = self.root;
            tracing::info!(task = %root, "watch dropped before the task finished; canceling it");
            handle.spawn(async move {
                if let Err(e) = client.cancel_task(root).await {
                    tracing::warn!(task = %root, error = %e, "could not cancel the task");
                }
            });
        }
    }
}
