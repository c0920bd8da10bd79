//! The page's side of the encoder worker: starts it, sends it commands and waits for each answer. The worker's
//! own wasm (burn, the networks) loads only when it starts, after the page is up.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use futures::channel::oneshot;
use s2v_shared::encoder_protocol::transport;
use s2v_shared::encoder_protocol::{EncoderCommand, EncoderEvent, EncoderFailure};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::Closure;
use web_sys::{MessageEvent, Worker, WorkerOptions, WorkerType};

use crate::launch::WorkerBuild;

/// An answer with its bulk data (samples, a spectrogram).
pub struct Answer {
    pub event: EncoderEvent,
    pub data: Option<wasm_bindgen::JsValue>,
}

/// What the worker says that is not the answer to a job: readiness, loading progress, a crash.
pub enum Notice {
    Ready,
    Event(EncoderEvent),
    /// The worker stopped (its wasm failed to start, or it crashed).
    Died(String),
}

type Pending = Rc<RefCell<HashMap<u32, oneshot::Sender<Answer>>>>;
/// A message and the buffers to transfer with it.
type Posted = (wasm_bindgen::JsValue, js_sys::Array);
/// Messages posted before the worker listens; `None` once it does.
type Queue = Rc<RefCell<Option<Vec<Posted>>>>;

/// The worker's handlers, kept alive as long as the worker is.
struct Handlers {
    _message: Closure<dyn Fn(MessageEvent)>,
    _error: Closure<dyn Fn(web_sys::ErrorEvent)>,
}

pub struct EncoderClient {
    worker: Worker,
    pending: Pending,
    /// Messages posted before the worker listens are lost: they wait here until it says it is ready.
    waiting: Queue,
    next_job: Cell<u32>,
    _handlers: Handlers,
}

impl EncoderClient {
    /// Starts the worker's `build`; `notice` hears everything that answers no job.
    pub fn start(build: WorkerBuild, notice: impl Fn(Notice) + 'static) -> Result<Self, String> {
        let options = WorkerOptions::new();
        options.set_type(WorkerType::Module);
        let worker = Worker::new_with_options(build.script(), &options)
            .map_err(|e| format!("the browser refused to start the encoder: {e:?}"))?;
        let pending: Pending = Rc::default();
        let waiting: Queue = Rc::new(RefCell::new(Some(Vec::new())));
        let notice = Rc::new(notice);
        let on_message = {
            let (pending, notice, worker, waiting) = (
                pending.clone(),
                notice.clone(),
                worker.clone(),
                waiting.clone(),
            );
            Closure::<dyn Fn(MessageEvent)>::new(move |message: MessageEvent| {
                if route(&pending, notice.as_ref(), &message) {
                    let queued = waiting.borrow_mut().take().unwrap_or_default();
                    for (message, transfer) in queued {
                        let _ = worker.post_message_with_transfer(&message, &transfer);
                    }
                }
            })
        };
        let on_error = {
            let (pending, notice) = (pending.clone(), notice.clone());
            Closure::<dyn Fn(web_sys::ErrorEvent)>::new(move |error: web_sys::ErrorEvent| {
                error.prevent_default();
                // Every job waiting now will never be answered.
                pending.borrow_mut().clear();
                notice(Notice::Died(error.message()));
            })
        };
        worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        Ok(Self {
            worker,
            pending,
            waiting,
            next_job: Cell::new(1),
            _handlers: Handlers {
                _message: on_message,
                _error: on_error,
            },
        })
    }

    /// Whether the worker has said it listens.
    pub fn is_ready(&self) -> bool {
        self.waiting.borrow().is_none()
    }

    /// Sends a command that answers nothing directly (loading reports through the notices).
    pub fn send(&self, command: &EncoderCommand) -> Result<(), String> {
        self.post(command, None)
    }

    /// Sends the command `make(job)` with its data, and waits for its answer.
    pub async fn ask(
        &self,
        make: impl FnOnce(u32) -> EncoderCommand,
        data: Option<&wasm_bindgen::JsValue>,
    ) -> Result<Answer, (EncoderFailure, String)> {
        let job = self.next_job.get();
        self.next_job.set(job.wrapping_add(1));
        let (reply, answer) = oneshot::channel();
        self.pending.borrow_mut().insert(job, reply);
        if let Err(why) = self.post(&make(job), data) {
            self.pending.borrow_mut().remove(&job);
            return Err((EncoderFailure::Internal, why));
        }
        let answer = answer.await.map_err(|_| {
            (
                EncoderFailure::Internal,
                "the encoder stopped before it answered".to_string(),
            )
        })?;
        match answer.event {
            EncoderEvent::Failed { error, message, .. } => Err((error, message)),
            _ => Ok(answer),
        }
    }

    fn post(
        &self,
        command: &EncoderCommand,
        data: Option<&wasm_bindgen::JsValue>,
    ) -> Result<(), String> {
        let (message, transfer) = transport::seal(command, data)?;
        if let Some(waiting) = self.waiting.borrow_mut().as_mut() {
            waiting.push((message, transfer));
            return Ok(());
        }
        self.worker
            .post_message_with_transfer(&message, &transfer)
            .map_err(|e| format!("cannot reach the encoder: {e:?}"))
    }
}

impl Drop for EncoderClient {
    fn drop(&mut self) {
        self.worker.terminate();
    }
}

/// An answer to its job, anything else to the notices. Returns whether the worker just said it is ready.
fn route(pending: &Pending, notice: &dyn Fn(Notice), message: &MessageEvent) -> bool {
    let Ok(envelope) = transport::open::<EncoderEvent>(&message.data()) else {
        notice(Notice::Died("the encoder said something unreadable".into()));
        return false;
    };
    let job = match &envelope.message {
        EncoderEvent::Ready => {
            notice(Notice::Ready);
            return true;
        }
        EncoderEvent::Decoded { job } | EncoderEvent::Encoded { job, .. } => Some(*job),
        EncoderEvent::Failed { job, .. } => *job,
        EncoderEvent::Progress { .. } | EncoderEvent::Loaded { .. } => None,
    };
    match job.and_then(|job| pending.borrow_mut().remove(&job)) {
        Some(reply) => {
            let _ = reply.send(Answer {
                event: envelope.message,
                data: envelope.data,
            });
        }
        None => notice(Notice::Event(envelope.message)),
    }
    false
}
