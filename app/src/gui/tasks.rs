//! Long work off the UI thread: each task runs on its own worker thread, reports progress
//! through a channel, can be cancelled, and ends with a typed result. The UI polls once per
//! frame; workers wake it with `request_repaint`. In the browser (no threads) a task runs on
//! the page's event loop instead: [`Tasks::spawn_async`] work yields at its awaits (GPU reads),
//! so the page stays responsive; [`Tasks::spawn`] work runs in one piece.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;

use super::document::Document;
use crate::jobs::{JobError, Reporter};
use medseg_data::proposal::Proposal;
use medseg_data::volume::LabelMap;

/// What a task produced.
pub enum Outcome {
    /// An opened image, prepared as a document (window, counts) off the UI thread.
    Document(Box<Document>),
    /// A bundled sample: a document, the labels that belong to it if any, and their names.
    DocumentWithLabels(Box<Document>, Option<Box<LabelMap>>, Vec<String>),
    Labels(Box<LabelMap>, std::path::PathBuf),
    /// A file was written (path, what).
    Saved(std::path::PathBuf, String),
    /// A network's proposal for the document with this serial number, and the model's title.
    Proposal(Box<Proposal>, String, u64),
    /// A model was loaded (its title).
    ModelReady(String),
    /// What the training panel found in a dataset folder.
    DatasetLook(Box<super::training::DatasetLook>),
}

/// Why a task ended without a result.
#[derive(Debug, PartialEq, Eq)]
pub enum TaskError {
    Cancelled,
    Failed(String),
}

/// Messages from workers.
pub enum Message {
    Progress {
        task: u64,
        fraction: Option<f32>,
        text: String,
    },
    Finished {
        task: u64,
        result: Result<Outcome, TaskError>,
    },
}

/// Handed to a worker: report progress, check for cancel.
#[derive(Clone)]
pub struct Progress {
    task: u64,
    tx: Sender<Message>,
    cancel: Arc<AtomicBool>,
    wake: Arc<dyn Fn() + Send + Sync>,
}

impl Progress {
    /// Reports progress; returns false when the user cancelled.
    pub fn report(&self, fraction: Option<f32>, text: impl Into<String>) -> bool {
        let _ = self.tx.send(Message::Progress {
            task: self.task,
            fraction,
            text: text.into(),
        });
        (self.wake)();
        !self.cancelled()
    }

    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// Sends the task's end (a cancel wins over whatever the work returned) and wakes the UI.
    fn finish(&self, result: Result<Outcome, JobError>) {
        let result = match result {
            _ if self.cancelled() => Err(TaskError::Cancelled),
            Err(JobError::Cancelled) => Err(TaskError::Cancelled),
            Err(e) => Err(TaskError::Failed(e.to_string())),
            Ok(o) => Ok(o),
        };
        let _ = self.tx.send(Message::Finished {
            task: self.task,
            result,
        });
        (self.wake)();
    }
}

impl Reporter for Progress {
    fn progress(&self, stage: &str, fraction: Option<f32>) -> bool {
        self.report(fraction, stage)
    }

    fn log(&self, line: &str) {
        self.report(None, line);
    }

    fn cancelled(&self) -> bool {
        Progress::cancelled(self)
    }
}

/// A running task as the UI sees it.
pub struct Running {
    pub id: u64,
    pub title: String,
    pub fraction: Option<f32>,
    pub text: String,
    cancel: Arc<AtomicBool>,
}

impl Running {
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelling(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }
}

/// The task list of the app.
pub struct Tasks {
    tx: Sender<Message>,
    rx: Receiver<Message>,
    next: u64,
    pub running: Vec<Running>,
    wake: Arc<dyn Fn() + Send + Sync>,
}

impl Tasks {
    pub fn new(wake: Arc<dyn Fn() + Send + Sync>) -> Self {
        let (tx, rx) = channel();
        Tasks {
            tx,
            rx,
            next: 1,
            running: Vec::new(),
            wake,
        }
    }

    /// Registers a task; the handle its work reports through.
    fn start(&mut self, title: String) -> Progress {
        let id = self.next;
        self.next += 1;
        let cancel = Arc::new(AtomicBool::new(false));
        self.running.push(Running {
            id,
            title,
            fraction: None,
            text: String::new(),
            cancel: cancel.clone(),
        });
        Progress {
            task: id,
            tx: self.tx.clone(),
            cancel,
            wake: self.wake.clone(),
        }
    }

    /// Starts `work` on a worker thread (in the browser: on the event loop, in one piece). A
    /// panic inside it is reported as an error, not lost.
    pub fn spawn(
        &mut self,
        title: impl Into<String>,
        work: impl FnOnce(&Progress) -> Result<Outcome, JobError> + Send + 'static,
    ) -> u64 {
        self.spawn_async(title, async move |p: &Progress| work(p))
    }

    /// Starts `work`, a future, on a worker thread that waits for it; in the browser on the
    /// page's event loop, where it gives way to the page at each await.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn spawn_async(
        &mut self,
        title: impl Into<String>,
        work: impl AsyncFnOnce(&Progress) -> Result<Outcome, JobError> + Send + 'static,
    ) -> u64 {
        let progress = self.start(title.into());
        let id = progress.task;
        let tx = self.tx.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("medseg-task-{id}"))
            .spawn(move || {
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    pollster::block_on(work(&progress))
                }))
                .unwrap_or_else(|p| {
                    Err(JobError::Failed(format!(
                        "internal error: {}",
                        medseg_model::gpu::panic_message(p.as_ref())
                    )))
                });
                progress.finish(result);
            });
        if let Err(e) = spawned {
            let _ = tx.send(Message::Finished {
                task: id,
                result: Err(TaskError::Failed(format!(
                    "could not start a worker thread: {e}"
                ))),
            });
        }
        id
    }

    #[cfg(target_arch = "wasm32")]
    pub fn spawn_async(
        &mut self,
        title: impl Into<String>,
        work: impl AsyncFnOnce(&Progress) -> Result<Outcome, JobError> + 'static,
    ) -> u64 {
        let progress = self.start(title.into());
        let id = progress.task;
        wasm_bindgen_futures::spawn_local(async move {
            let result = work(&progress).await;
            progress.finish(result);
        });
        id
    }

    /// Drains the workers' messages: progress updates the running list, finished tasks are
    /// returned with their result.
    pub fn poll(&mut self) -> Vec<(u64, String, Result<Outcome, TaskError>)> {
        let mut done = Vec::new();
        while let Ok(m) = self.rx.try_recv() {
            match m {
                Message::Progress {
                    task,
                    fraction,
                    text,
                } => {
                    if let Some(r) = self.running.iter_mut().find(|r| r.id == task) {
                        r.fraction = fraction;
                        r.text = text;
                    }
                }
                Message::Finished { task, result } => {
                    let title = self
                        .running
                        .iter()
                        .position(|r| r.id == task)
                        .map(|i| self.running.remove(i).title)
                        .unwrap_or_default();
                    done.push((task, title, result));
                }
            }
        }
        done
    }

    pub fn is_idle(&self) -> bool {
        self.running.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn wait(tasks: &mut Tasks) -> Vec<(u64, String, Result<Outcome, TaskError>)> {
        let t0 = Instant::now();
        let mut all = Vec::new();
        while !tasks.is_idle() && t0.elapsed() < Duration::from_secs(10) {
            all.extend(tasks.poll());
            std::thread::sleep(Duration::from_millis(5));
        }
        all
    }

    #[test]
    fn tasks_report_errors_panics_and_cancel() {
        let mut tasks = Tasks::new(Arc::new(|| {}));
        tasks.spawn("fails", |_| Err(JobError::Failed("boom".into())));
        tasks.spawn("panics", |_| panic!("oops"));
        let id = tasks.spawn("cancelled", |p| {
            while p.report(Some(0.5), "working") {
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok(Outcome::Saved("x".into(), "never".into()))
        });
        tasks.running.iter().find(|r| r.id == id).unwrap().cancel();
        let mut done = wait(&mut tasks);
        done.sort_by_key(|d| d.0);
        let errs: Vec<TaskError> = done.into_iter().map(|d| d.2.err().unwrap()).collect();
        assert_eq!(errs[0], TaskError::Failed("boom".into()));
        assert!(
            matches!(&errs[1], TaskError::Failed(e) if e.contains("oops")),
            "{:?}",
            errs[1]
        );
        assert_eq!(errs[2], TaskError::Cancelled);
    }
}
