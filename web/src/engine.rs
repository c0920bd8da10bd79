//! What the page does: learn the server's model, start the encoder, take sounds in (files, the microphone),
//! encode them, and generate. Views call these; results land in the [`Studio`]'s signals.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use leptos::prelude::*;
use leptos::task::spawn_local;
use s2v_shared::audio::{check_audible, to_mono_16k};
use s2v_shared::encoder_protocol::transport::{bytes_array, float_array, floats};
use s2v_shared::encoder_protocol::{EncoderCommand, EncoderEvent, EncoderFailure};
use s2v_shared::wire::{GenerateRequest, ModelKind};
use web_sys::AbortController;

use crate::api::{self, ApiFailure, Streamed};
use crate::encoder::{EncoderClient, Notice};
use crate::history::{self, Recent};
use crate::launch::{self, Launch, WorkerBuild};
use crate::mixing::{self, Part};
use crate::recording::{Level, Recorded, Recorder};
use crate::state::{EncoderStatus, Microphone, Picture, Progress, Sound, Studio};
use crate::{browser_decode, wav};

/// The longest part of a file kept: the visitor picks which 10 s of it the network hears.
pub const MAX_SECONDS: f64 = 600.0;
/// Files larger than this are refused before they are read.
pub const MAX_FILE_BYTES: f64 = 100.0 * 1024.0 * 1024.0;

/// Which sound a file or recording is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    First,
    Second,
}

pub struct Engine {
    studio: Studio,
    encoder: RefCell<Option<Rc<EncoderClient>>>,
    /// The ways to run the encoder left to try if the running one crashes, next first.
    fallbacks: RefCell<std::collections::VecDeque<Launch>>,
    recorder: RefCell<Option<Recorder>>,
    generation: RefCell<Option<AbortController>>,
    /// Each encoding's number: a result older than the newest request is dropped.
    encoding_round: Cell<u64>,
}

/// The engine as views hold it (a copyable handle to a value that stays on this thread).
pub type EngineHandle = StoredValue<Rc<Engine>, LocalStorage>;

impl Engine {
    pub fn new(studio: Studio) -> Rc<Self> {
        Rc::new(Self {
            studio,
            encoder: RefCell::default(),
            fallbacks: RefCell::default(),
            recorder: RefCell::default(),
            generation: RefCell::default(),
            encoding_round: Cell::new(0),
        })
    }

    /// Learns the server's model, then starts the encoder for it.
    pub fn start(self: &Rc<Self>) {
        let engine = self.clone();
        spawn_local(async move {
            match api::served_model().await {
                Ok(served) => {
                    let weights = served.audio_encoder.clone();
                    if let ModelKind::Diffusion(controls) = served.kind {
                        engine.studio.steps.set(controls.steps as f64);
                        engine.studio.guidance.set(f64::from(controls.guidance));
                    }
                    engine.studio.served.set(Some(served));
                    match weights {
                        Some(url) => engine.plan_encoder(url).await,
                        None => engine.studio.encoder.set(EncoderStatus::Unavailable(
                            "this server offers no encoder for the browser".into(),
                        )),
                    }
                }
                Err(failure) => engine.studio.server_problem.set(Some(failure.to_string())),
            }
        });
    }

    /// Decides how to run the encoder here (see [`launch::plan`]), and starts the first way.
    async fn plan_encoder(self: &Rc<Self>, weights_url: String) {
        let webgpu = s2v_shared::browser::webgpu_adapter().await.is_ok();
        let plan = launch::plan(cpu_asked(), webgpu, launch::cross_origin_isolated());
        *self.fallbacks.borrow_mut() = plan.into();
        self.start_next_encoder(weights_url, None);
    }

    /// Starts the next way to run the encoder; `failed` says why the one before stopped.
    fn start_next_encoder(self: &Rc<Self>, weights_url: String, failed: Option<String>) {
        let next = self.fallbacks.borrow_mut().pop_front();
        match (next, failed) {
            (Some(launch), _) => self.start_encoder(weights_url, launch),
            (None, Some(why)) => self.studio.encoder.set(EncoderStatus::Unavailable(format!(
                "the encoder stopped ({why})"
            ))),
            (None, None) => self.studio.encoder.set(EncoderStatus::Unavailable(
                "no way to run the encoder here".into(),
            )),
        }
    }

    fn start_encoder(self: &Rc<Self>, weights_url: String, Launch { build, cpu_only }: Launch) {
        let engine = Rc::downgrade(self);
        let url = weights_url.clone();
        let started = EncoderClient::start(build, move |notice| {
            if let Some(engine) = engine.upgrade() {
                engine.on_notice(notice, &url);
            }
        });
        match started {
            Ok(client) => {
                self.studio.encoder.set(EncoderStatus::Starting);
                let _ = client.send(&EncoderCommand::Load {
                    weights_url: weights_url.clone(),
                    cpu_only,
                });
                let client = Rc::new(client);
                *self.encoder.borrow_mut() = Some(client.clone());
                if build == WorkerBuild::Threaded {
                    self.watch_threads_start(client, weights_url);
                }
            }
            Err(why) => self.start_next_encoder(weights_url, Some(why)),
        }
    }

    /// A thread pool whose workers never start (a browser that refuses them) leaves the worker silent rather
    /// than crashed: past a minute without its `ready`, the next way to run the encoder takes over.
    fn watch_threads_start(self: &Rc<Self>, client: Rc<EncoderClient>, weights_url: String) {
        const THREADS_START_LIMIT_MS: u32 = 60_000;
        let engine = Rc::downgrade(self);
        spawn_local(async move {
            gloo_timers::future::TimeoutFuture::new(THREADS_START_LIMIT_MS).await;
            let Some(engine) = engine.upgrade() else {
                return;
            };
            let still_running = engine.client().is_some_and(|c| Rc::ptr_eq(&c, &client));
            if still_running && !client.is_ready() {
                engine.encoder_died(
                    "its threads did not start within a minute".into(),
                    &weights_url,
                );
            }
        });
    }

    fn on_notice(self: &Rc<Self>, notice: Notice, weights_url: &str) {
        let status = &self.studio.encoder;
        match notice {
            Notice::Ready => {}
            Notice::Event(EncoderEvent::Progress { loaded, total }) => {
                status.set(EncoderStatus::Fetching { loaded, total })
            }
            Notice::Event(EncoderEvent::Loaded {
                backend,
                threads,
                seconds,
                from_cache,
                no_webgpu,
            }) => {
                status.set(EncoderStatus::Ready {
                    backend,
                    threads,
                    seconds,
                    from_cache,
                    no_webgpu,
                });
            }
            Notice::Event(EncoderEvent::Failed { message, .. }) => {
                status.set(EncoderStatus::Unavailable(message));
            }
            Notice::Event(_) => {}
            Notice::Died(why) => self.encoder_died(why, weights_url),
        }
    }

    /// A crash (on WebGPU, or a build with threads that cannot start) moves on to the next way to run the
    /// encoder; after the last, sounds go to the server.
    fn encoder_died(self: &Rc<Self>, why: String, weights_url: &str) {
        self.encoder.borrow_mut().take();
        self.start_next_encoder(weights_url.to_string(), Some(why));
    }

    fn client(&self) -> Option<Rc<EncoderClient>> {
        self.encoder.borrow().clone()
    }

    /// A file the visitor gave, as the first or the second sound.
    pub fn take_file(self: &Rc<Self>, file: web_sys::File, slot: Slot) {
        let engine = self.clone();
        self.studio.input_problem.set(None);
        if file.size() > MAX_FILE_BYTES {
            self.studio.input_problem.set(Some(format!(
                "{} is over {} MB: give a shorter recording",
                file.name(),
                MAX_FILE_BYTES / 1024.0 / 1024.0
            )));
            return;
        }
        spawn_local(async move {
            let name = file.name();
            match engine.decode_file(&file).await {
                Ok(samples) => engine.set_sound(
                    slot,
                    Sound {
                        name,
                        samples: Arc::new(samples),
                        start: 0,
                    },
                ),
                Err(why) => engine
                    .studio
                    .input_problem
                    .set(Some(format!("{name}: {why}"))),
            }
        });
    }

    async fn decode_file(&self, file: &web_sys::File) -> Result<Vec<f32>, String> {
        let buffer = wasm_bindgen_futures::JsFuture::from(file.array_buffer())
            .await
            .map_err(|e| format!("cannot read the file: {}", api::describe(&e)))?;
        let bytes = js_sys::Uint8Array::new(&buffer).to_vec();
        if bytes.is_empty() {
            return Err("the file is empty".into());
        }
        let extension = file.name().rsplit_once('.').map(|(_, e)| e.to_lowercase());
        if let Some(client) = self.client() {
            let asked = client
                .ask(
                    |job| EncoderCommand::Decode {
                        job,
                        extension,
                        max_seconds: MAX_SECONDS,
                    },
                    Some(&bytes_array(&bytes)),
                )
                .await;
            match asked {
                Ok(answer) => return floats(answer.data.as_ref()),
                // The browser may read what the project's decoder does not (AAC, Opus).
                Err((EncoderFailure::Undecodable, _)) => {}
                Err((_, why)) => return Err(why),
            }
        }
        let (samples, rate) = browser_decode::decode(&bytes).await?;
        self.to_16k(samples, rate).await
    }

    /// Mono samples at any rate to 16 kHz, by the worker where it runs (the same resampler as the server's).
    async fn to_16k(&self, samples: Vec<f32>, sample_rate: u32) -> Result<Vec<f32>, String> {
        if let Some(client) = self.client() {
            let answer = client
                .ask(
                    |job| EncoderCommand::Resample { job, sample_rate },
                    Some(&float_array(&samples)),
                )
                .await
                .map_err(|(_, why)| why)?;
            return floats(answer.data.as_ref());
        }
        let wide: Vec<f64> = samples.iter().map(|&s| f64::from(s)).collect();
        let mono = to_mono_16k(&wide, sample_rate, MAX_SECONDS).map_err(|e| e.to_string())?;
        check_audible(&mono).map_err(|e| e.to_string())?;
        Ok(mono.iter().map(|&s| s as f32).collect())
    }

    /// A new sound; the page's effects encode it.
    fn set_sound(&self, slot: Slot, sound: Sound) {
        match slot {
            Slot::First => self.studio.first.set(Some(sound)),
            Slot::Second => self.studio.second.set(Some(sound)),
        }
    }

    /// Starts recording, or stops a recording under way.
    pub fn toggle_recording(self: &Rc<Self>) {
        // Taken before stopping: stopping hands the recording to `recorded`, which clears the slot too.
        let running = self.recorder.borrow_mut().take();
        if let Some(recorder) = running {
            recorder.stop();
            return;
        }
        if self.studio.microphone.get_untracked() == Microphone::Asking {
            return; // the browser is still asking for the microphone
        }
        let engine = self.clone();
        self.studio.input_problem.set(None);
        self.studio.microphone.set(Microphone::Asking);
        spawn_local(async move {
            let studio = engine.studio;
            let done = {
                let engine = engine.clone();
                move |recorded: Recorded| engine.recorded(recorded)
            };
            let level = move |level: Level| {
                studio.microphone.set(Microphone::Recording {
                    seconds: level.seconds,
                    peak: level.peak,
                })
            };
            match Recorder::start(level, done).await {
                Ok(recorder) => {
                    *engine.recorder.borrow_mut() = Some(recorder);
                    studio.microphone.set(Microphone::Recording {
                        seconds: 0.0,
                        peak: 0.0,
                    });
                }
                Err(why) => {
                    studio.microphone.set(Microphone::Idle);
                    studio.input_problem.set(Some(why));
                }
            }
        });
    }

    fn recorded(self: &Rc<Self>, recorded: Recorded) {
        self.recorder.borrow_mut().take();
        self.studio.microphone.set(Microphone::Idle);
        let engine = self.clone();
        spawn_local(async move {
            match engine.to_16k(recorded.samples, recorded.sample_rate).await {
                Ok(samples) => engine.set_sound(
                    Slot::First,
                    Sound {
                        name: "your recording".into(),
                        samples: Arc::new(samples),
                        start: 0,
                    },
                ),
                Err(why) => engine
                    .studio
                    .input_problem
                    .set(Some(format!("the recording: {why}"))),
            }
        });
    }

    /// A picture to mix with the sound: its feature comes from the server's image encoder.
    pub fn take_picture(self: &Rc<Self>, file: web_sys::File) {
        let engine = self.clone();
        spawn_local(async move {
            let name = file.name();
            let read = wasm_bindgen_futures::JsFuture::from(file.array_buffer()).await;
            let bytes = match read {
                Ok(buffer) => js_sys::Uint8Array::new(&buffer).to_vec(),
                Err(e) => {
                    return engine
                        .studio
                        .input_problem
                        .set(Some(format!("{name}: {}", api::describe(&e))));
                }
            };
            match api::encode_image(&bytes, &file.type_()).await {
                Ok(feature) => engine.studio.picture.set(Some(Picture {
                    name,
                    feature: Arc::new(feature),
                })),
                Err(failure) => engine
                    .studio
                    .input_problem
                    .set(Some(format!("{name}: {failure}"))),
            }
        });
    }

    /// Encodes the sounds as the controls mix them; the new latent then starts a generation (both by the page's
    /// effects). Waits while the encoder loads.
    pub fn encode(self: &Rc<Self>) {
        let studio = self.studio;
        let Some(first) = studio.first.get_untracked() else {
            return;
        };
        if matches!(
            studio.encoder.get_untracked(),
            EncoderStatus::Starting | EncoderStatus::Fetching { .. }
        ) && !studio.encode_on_server.get_untracked()
        {
            // Encoded once the encoder is ready.
            studio.progress.set(Progress::Encoding);
            return;
        }
        let second = studio.second.get_untracked();
        let mut parts = vec![(first, studio.first_volume.get_untracked())];
        parts.extend(second.map(|s| (s, studio.second_volume.get_untracked())));
        let round = self.encoding_round.get() + 1;
        self.encoding_round.set(round);
        let engine = self.clone();
        studio.progress.set(Progress::Encoding);
        spawn_local(async move {
            let result = engine.latent_of(&parts).await;
            if engine.encoding_round.get() != round {
                return; // a newer mix is being encoded
            }
            match result {
                Ok((latent, spectrogram, note)) => {
                    studio.spectrogram.set(spectrogram.map(Arc::new));
                    studio.encoded_note.set(Some(note));
                    studio.sound_latent.set(Some(Arc::new(latent)));
                }
                Err(why) => studio.progress.set(Progress::Failed(why)),
            }
        });
    }

    /// The latent of the mixed clip, its spectrogram where the browser computed one, and how it was made.
    async fn latent_of(
        &self,
        parts: &[(Sound, f64)],
    ) -> Result<(Vec<f32>, Option<Vec<f32>>, String), String> {
        let parts: Vec<Part> = parts
            .iter()
            .map(|(sound, volume)| Part {
                samples: &sound.samples,
                start: sound.start,
                volume: *volume,
            })
            .collect();
        let clip = mixing::clip(&parts).map_err(|e| e.to_string())?;
        let on_server = self.studio.encodes_on_server();
        let client = self.client();
        let browser = match &client {
            Some(client) => Some(
                client
                    .ask(
                        |job| EncoderCommand::Encode {
                            job,
                            latent: !on_server,
                        },
                        Some(&float_array(&clip)),
                    )
                    .await
                    .map_err(|(_, why)| why)?,
            ),
            None => None,
        };
        let spectrogram = browser
            .as_ref()
            .and_then(|answer| floats(answer.data.as_ref()).ok());
        if let Some(EncoderEvent::Encoded {
            latent: Some(latent),
            seconds,
            ..
        }) = browser.map(|answer| answer.event)
        {
            let backend = match self.studio.encoder.get_untracked() {
                EncoderStatus::Ready { backend, .. } => backend.label(),
                _ => "this browser",
            };
            return Ok((
                latent,
                spectrogram,
                format!(
                    "encoded in your browser on {backend} in {}",
                    duration(seconds)
                ),
            ));
        }
        let latent = api::encode_audio(&wav::wav_16k(&clip))
            .await
            .map_err(|failure| failure.to_string())?;
        Ok((latent, spectrogram, "encoded on the server".into()))
    }

    /// Generates from the current latent and controls, replacing any generation under way.
    pub fn generate(self: &Rc<Self>) {
        let studio = self.studio;
        let Some(latent) = studio.sound_latent.get_untracked() else {
            return;
        };
        let picture = studio.picture.get_untracked();
        let request = GenerateRequest {
            latent: mixing::latent(
                &latent,
                picture
                    .as_ref()
                    .map(|p| (p.feature.as_slice(), studio.lambda.get_untracked())),
            ),
            count: studio.count.get_untracked(),
            seed: Some(studio.seed.get_untracked()),
            model: studio.served.get_untracked().map(|s| s.model.id),
            ..controls_of(studio)
        };
        let previous = self.generation.borrow_mut().take();
        if let Some(previous) = previous {
            previous.abort();
        }
        let Ok(controller) = AbortController::new() else {
            return;
        };
        let signal = controller.signal();
        *self.generation.borrow_mut() = Some(controller);
        let engine = self.clone();
        spawn_local(async move { engine.run_generation(request, signal).await });
    }

    async fn run_generation(
        self: Rc<Self>,
        request: GenerateRequest,
        signal: web_sys::AbortSignal,
    ) {
        let studio = self.studio;
        loop {
            studio.images.set(Vec::new());
            studio.previews.set(Vec::new());
            studio.share.set(None);
            studio.progress.set(Progress::Generating);
            let outcome = api::generate(&request, &signal, |event| match event {
                Streamed::Preview(preview) => studio.previews.update(|previews| {
                    if previews.len() <= preview.index {
                        previews.resize(preview.index + 1, None);
                    }
                    previews[preview.index] = Some(preview.jpeg);
                }),
                Streamed::Image(image) => studio.images.update(|images| images.push(image.url)),
                Streamed::Done(done) => {
                    let pictures = studio.images.get_untracked();
                    studio.share.set(Some(done.share.clone()));
                    studio.progress.set(Progress::Done);
                    let entry = Recent {
                        id: done.id,
                        share: done.share,
                        picture: pictures.first().cloned().unwrap_or_default(),
                        count: pictures.len(),
                    };
                    let recent = history::with(studio.recent.get_untracked(), entry);
                    history::save(&recent);
                    studio.recent.set(recent);
                }
            })
            .await;
            match outcome {
                Ok(()) | Err(ApiFailure::Aborted) => return,
                Err(ApiFailure::Busy { retry_after, .. }) => {
                    if !wait_out(studio, retry_after, &signal).await {
                        return;
                    }
                }
                Err(failure) => {
                    return studio.progress.set(Progress::Failed(failure.to_string()));
                }
            }
        }
    }
}

/// The request's model controls: a diffusion model's steps and guidance, or a GAN's truncation.
fn controls_of(studio: Studio) -> GenerateRequest {
    let (mut truncation, mut steps, mut guidance) = (None, None, None);
    match studio.diffusion_controls() {
        Some(_) => {
            steps = Some(studio.steps.get_untracked().round() as usize);
            guidance = Some(studio.guidance.get_untracked() as f32);
        }
        None => {
            truncation = studio
                .truncate
                .get_untracked()
                .then(|| studio.truncation.get_untracked() as f32);
        }
    }
    GenerateRequest {
        latent: Vec::new(),
        count: 0,
        seed: None,
        truncation,
        model: None,
        steps,
        guidance,
    }
}

/// A duration as a person reads it: milliseconds under a second, else seconds.
fn duration(seconds: f64) -> String {
    if seconds < 1.0 {
        format!("{:.0} ms", seconds * 1000.0)
    } else {
        format!("{seconds:.2} s")
    }
}

/// Whether the address asks for the CPU (`?encoder=cpu`): for a browser whose WebGPU misbehaves, and for tests.
fn cpu_asked() -> bool {
    web_sys::window()
        .and_then(|w| w.location().search().ok())
        .is_some_and(|query| query.contains("encoder=cpu"))
}

/// Counts down the seconds the server asked for; false when the generation was replaced meanwhile.
async fn wait_out(studio: Studio, seconds: u64, signal: &web_sys::AbortSignal) -> bool {
    for left in (1..=seconds.max(1)).rev() {
        studio.progress.set(Progress::Waiting(left));
        gloo_timers::future::TimeoutFuture::new(1000).await;
        if signal.aborted() {
            return false;
        }
    }
    true
}
