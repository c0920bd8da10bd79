//! Recording from the microphone: the permission prompt, samples from an AudioWorklet, a level for the meter,
//! and a stop after 10 s (or earlier, when asked).

use std::cell::RefCell;
use std::rc::Rc;

use wasm_bindgen::prelude::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{AudioContext, AudioWorkletNode, MediaStream, MediaStreamConstraints, MessageEvent};

/// The longest recording: the network hears 10 s.
pub const LIMIT_SECONDS: f64 = 10.0;

/// The worklet module trunk copies beside the page.
const WORKLET: &str = "./recorder-worklet.js";

/// A recording that ended: mono samples at the microphone's rate.
pub struct Recorded {
    pub samples: Vec<f32>,
    pub sample_rate: u32,
}

/// How the recording is going, for the countdown and the meter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Level {
    pub seconds: f64,
    /// The loudest sample of the last block, 0 to 1.
    pub peak: f64,
}

/// Why recording did not start, in words a person can act on.
pub fn explain(error: &JsValue) -> String {
    let name = js_sys::Reflect::get(error, &"name".into())
        .ok()
        .and_then(|n| n.as_string())
        .unwrap_or_default();
    match name.as_str() {
        "NotAllowedError" | "SecurityError" => {
            "the microphone was refused: allow it for this site in the browser's settings, or upload a file".into()
        }
        "NotFoundError" | "OverconstrainedError" => {
            "no microphone was found: connect one, or upload a file".into()
        }
        "NotReadableError" => "the microphone is in use by another program".into(),
        _ => format!("the microphone cannot be used: {}", crate::api::describe(error)),
    }
}

struct Running {
    context: AudioContext,
    stream: MediaStream,
    node: AudioWorkletNode,
    samples: Vec<f32>,
    sample_rate: u32,
    _on_block: Closure<dyn FnMut(MessageEvent)>,
    on_done: Option<Box<dyn FnOnce(Recorded)>>,
}

/// A recording in progress; [`Recorder::stop`] ends it early.
#[derive(Clone)]
pub struct Recorder {
    running: Rc<RefCell<Option<Running>>>,
}

impl Recorder {
    /// Asks for the microphone and records; `on_level` hears each block, `on_done` the whole recording once it
    /// stops (at the limit, or by [`Recorder::stop`]).
    pub async fn start(
        on_level: impl Fn(Level) + 'static,
        on_done: impl FnOnce(Recorded) + 'static,
    ) -> Result<Self, String> {
        let stream = microphone().await?;
        let context = AudioContext::new().map_err(|e| explain(&e))?;
        let worklet = context.audio_worklet().map_err(|e| explain(&e))?;
        JsFuture::from(worklet.add_module(WORKLET).map_err(|e| explain(&e))?)
            .await
            .map_err(|e| format!("the recorder did not load: {}", crate::api::describe(&e)))?;
        let source = context
            .create_media_stream_source(&stream)
            .map_err(|e| explain(&e))?;
        let node = AudioWorkletNode::new(&context, "s2v-recorder").map_err(|e| explain(&e))?;
        source
            .connect_with_audio_node(&node)
            .map_err(|e| explain(&e))?;
        // Pulled by the destination so that it runs; it writes no output, so nothing is heard.
        node.connect_with_audio_node(&context.destination())
            .map_err(|e| explain(&e))?;
        let sample_rate = context.sample_rate() as u32;
        let recorder = Self {
            running: Rc::default(),
        };
        let on_block = {
            let recorder = recorder.clone();
            Closure::<dyn FnMut(MessageEvent)>::new(move |block: MessageEvent| {
                let samples = js_sys::Float32Array::new(&block.data()).to_vec();
                if let Some(level) = recorder.append(&samples) {
                    on_level(level);
                }
            })
        };
        node.port()
            .map_err(|e| explain(&e))?
            .set_onmessage(Some(on_block.as_ref().unchecked_ref()));
        *recorder.running.borrow_mut() = Some(Running {
            context,
            stream,
            node,
            samples: Vec::with_capacity((LIMIT_SECONDS * f64::from(sample_rate)) as usize),
            sample_rate,
            _on_block: on_block,
            on_done: Some(Box::new(on_done)),
        });
        Ok(recorder)
    }

    /// Ends the recording now.
    pub fn stop(&self) {
        let Some(mut running) = self.running.borrow_mut().take() else {
            return;
        };
        // Blocks the worklet posted before it stopped must not reach the handler dropped here.
        if let Ok(port) = running.node.port() {
            port.set_onmessage(None);
        }
        let _ = running.node.disconnect();
        for track in running.stream.get_tracks().iter() {
            track.unchecked_into::<web_sys::MediaStreamTrack>().stop();
        }
        let _ = running.context.close();
        if let Some(done) = running.on_done.take() {
            done(Recorded {
                samples: std::mem::take(&mut running.samples),
                sample_rate: running.sample_rate,
            });
        }
    }

    /// Keeps a block; stops at the limit. Returns the level to show.
    fn append(&self, block: &[f32]) -> Option<Level> {
        let level = {
            let mut running = self.running.borrow_mut();
            let running = running.as_mut()?;
            let limit = (LIMIT_SECONDS * f64::from(running.sample_rate)) as usize;
            let room = limit.saturating_sub(running.samples.len());
            running
                .samples
                .extend_from_slice(&block[..block.len().min(room)]);
            Level {
                seconds: running.samples.len() as f64 / f64::from(running.sample_rate),
                peak: block.iter().fold(0.0f32, |p, s| p.max(s.abs())).into(),
            }
        };
        if level.seconds >= LIMIT_SECONDS {
            // Stopping drops the handler that is running now: do it once that handler has returned.
            let recorder = self.clone();
            wasm_bindgen_futures::spawn_local(async move { recorder.stop() });
        }
        Some(level)
    }
}

async fn microphone() -> Result<MediaStream, String> {
    let window = web_sys::window().ok_or("no window")?;
    let devices = window.navigator().media_devices().map_err(|_| {
        "this browser offers no microphone here (the page must be opened over https or from localhost)"
            .to_string()
    })?;
    let constraints = MediaStreamConstraints::new();
    constraints.set_audio(&JsValue::TRUE);
    let promise = devices
        .get_user_media_with_constraints(&constraints)
        .map_err(|e| explain(&e))?;
    Ok(JsFuture::from(promise)
        .await
        .map_err(|e| explain(&e))?
        .unchecked_into())
}
