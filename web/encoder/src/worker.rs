//! The worker's message loop: each command is handled as it comes, and answered with one event.

use std::cell::RefCell;
use std::rc::Rc;

use s2v_shared::audio::{AudioError, check_audible, mono_16k_from_bytes, to_mono_16k};
use s2v_shared::encoder_protocol::transport::{self, Envelope};
use s2v_shared::encoder_protocol::{EncoderCommand, EncoderEvent, EncoderFailure};
use wasm_bindgen::JsValue;
use wasm_bindgen::prelude::Closure;
use web_sys::{DedicatedWorkerGlobalScope, MessageEvent};

use crate::model::{Encoder, spectrogram};
use crate::weights;

/// Starts listening, and tells the page so.
pub fn run() {
    console_error_panic_hook::set_once();
    let scope: DedicatedWorkerGlobalScope = wasm_bindgen::JsCast::unchecked_into(js_sys::global());
    let encoder: Rc<RefCell<Option<Rc<Encoder>>>> = Rc::default();
    let replies = scope.clone();
    let onmessage = Closure::<dyn Fn(MessageEvent)>::new(move |event: MessageEvent| {
        let (scope, encoder) = (replies.clone(), encoder.clone());
        wasm_bindgen_futures::spawn_local(async move {
            let (event, data) = match transport::open::<EncoderCommand>(&event.data()) {
                Ok(envelope) => handle(envelope, &scope, &encoder).await,
                Err(why) => (
                    internal(None, format!("an unreadable command: {why}")),
                    None,
                ),
            };
            post(&scope, &event, data.as_ref());
        });
    });
    scope.set_onmessage(Some(wasm_bindgen::JsCast::unchecked_ref(
        onmessage.as_ref(),
    )));
    onmessage.forget();
    post(&scope, &EncoderEvent::Ready, None);
}

fn post(scope: &DedicatedWorkerGlobalScope, event: &EncoderEvent, data: Option<&JsValue>) {
    match transport::seal(event, data) {
        Ok((message, transfer)) => {
            if let Err(e) = scope.post_message_with_transfer(&message, &transfer) {
                web_sys::console::error_1(&e);
            }
        }
        Err(why) => web_sys::console::error_1(&why.into()),
    }
}

type Reply = (EncoderEvent, Option<JsValue>);

async fn handle(
    envelope: Envelope<EncoderCommand>,
    scope: &DedicatedWorkerGlobalScope,
    encoder: &Rc<RefCell<Option<Rc<Encoder>>>>,
) -> Reply {
    let data = envelope.data.as_ref();
    match envelope.message {
        EncoderCommand::Load {
            weights_url,
            cpu_only,
        } => (load(&weights_url, cpu_only, scope, encoder).await, None),
        EncoderCommand::Decode {
            job,
            extension,
            max_seconds,
        } => decoded(
            job,
            transport::bytes(data)
                .map_err(unexpected)
                .and_then(|bytes| {
                    mono_16k_from_bytes(&bytes, extension.as_deref(), max_seconds)
                        .map_err(audio_error)
                }),
        ),
        EncoderCommand::Resample { job, sample_rate } => decoded(
            job,
            transport::floats(data)
                .map_err(unexpected)
                .and_then(|samples| {
                    let samples: Vec<f64> = samples.iter().map(|&s| f64::from(s)).collect();
                    to_mono_16k(&samples, sample_rate, f64::INFINITY).map_err(audio_error)
                }),
        ),
        EncoderCommand::Encode { job, latent } => {
            let loaded = encoder.borrow().clone();
            encode(job, latent, transport::floats(data), loaded).await
        }
    }
}

async fn load(
    url: &str,
    cpu_only: bool,
    scope: &DedicatedWorkerGlobalScope,
    slot: &Rc<RefCell<Option<Rc<Encoder>>>>,
) -> EncoderEvent {
    let started = now();
    let fetched = match weights::fetch(url, |loaded, total| {
        post(scope, &EncoderEvent::Progress { loaded, total }, None);
    })
    .await
    {
        Ok(fetched) => fetched,
        Err(why) => return failed(None, EncoderFailure::Weights, why),
    };
    match Encoder::load(&fetched.bytes, !cpu_only).await {
        Ok((encoder, no_webgpu)) => {
            let (backend, threads) = (encoder.backend(), encoder.threads());
            *slot.borrow_mut() = Some(Rc::new(encoder));
            EncoderEvent::Loaded {
                backend,
                threads: u32::try_from(threads).unwrap_or(u32::MAX),
                seconds: (now() - started) / 1000.0,
                from_cache: fetched.from_cache,
                no_webgpu,
            }
        }
        Err(why) => failed(None, EncoderFailure::Weights, why),
    }
}

/// A decoded sound, if it is one worth encoding.
fn decoded(job: u32, mono: Result<Vec<f64>, (EncoderFailure, String)>) -> Reply {
    let checked = mono.and_then(|mono| check_audible(&mono).map(|()| mono).map_err(audio_error));
    match checked {
        Ok(mono) => {
            let samples: Vec<f32> = mono.iter().map(|&s| s as f32).collect();
            (
                EncoderEvent::Decoded { job },
                Some(transport::float_array(&samples)),
            )
        }
        Err((error, message)) => (failed(Some(job), error, message), None),
    }
}

async fn encode(
    job: u32,
    with_latent: bool,
    clip: Result<Vec<f32>, String>,
    encoder: Option<Rc<Encoder>>,
) -> Reply {
    // Timed from the clip: the spectrogram and the network, all a browser computes for a sound.
    let started = now();
    let spectrogram = match clip.and_then(|clip| spectrogram(&clip)) {
        Ok(spectrogram) => spectrogram,
        Err(why) => return (internal(Some(job), why), None),
    };
    let latent = match (with_latent, encoder) {
        (false, _) => None,
        (true, None) => {
            return (
                internal(Some(job), "the encoder is not loaded yet".into()),
                None,
            );
        }
        (true, Some(encoder)) => match encoder.latent(spectrogram.clone()).await {
            Ok(latent) => Some(latent),
            Err(why) => return (internal(Some(job), why), None),
        },
    };
    (
        EncoderEvent::Encoded {
            job,
            latent,
            seconds: (now() - started) / 1000.0,
        },
        Some(transport::float_array(&spectrogram)),
    )
}

fn unexpected(why: String) -> (EncoderFailure, String) {
    (EncoderFailure::Internal, why)
}

fn audio_error(error: AudioError) -> (EncoderFailure, String) {
    (EncoderFailure::from(&error), error.to_string())
}

fn failed(job: Option<u32>, error: EncoderFailure, message: String) -> EncoderEvent {
    EncoderEvent::Failed {
        job,
        error,
        message,
    }
}

fn internal(job: Option<u32>, message: String) -> EncoderEvent {
    failed(job, EncoderFailure::Internal, message)
}

/// Milliseconds on the worker's clock.
fn now() -> f64 {
    let scope: web_sys::WorkerGlobalScope = wasm_bindgen::JsCast::unchecked_into(js_sys::global());
    scope.performance().map_or(0.0, |p| p.now())
}
