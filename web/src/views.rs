//! The page's parts. Each reads the [`Studio`] from context and calls the engine on what the visitor does.

use leptos::ev;
use leptos::html::Canvas;
use leptos::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{DragEvent, HtmlInputElement};

use crate::engine::{EngineHandle, Slot};
use crate::recording::LIMIT_SECONDS;
use crate::state::{EncoderStatus, Microphone, Progress, Sound, Studio};

/// Where the audio encoder runs, and how loading it goes.
#[component]
pub fn EncoderLine() -> impl IntoView {
    let studio = expect_context::<Studio>();
    move || {
        match studio.encoder.get() {
        EncoderStatus::Starting => view! {
            <p class="status" role="status">"Starting the encoder in your browser…"</p>
        }
        .into_any(),
        EncoderStatus::Fetching { loaded, total } => {
            let percent = total.map(|t| (loaded as f64 / t.max(1) as f64 * 100.0).round());
            view! {
                <p class="status" role="status">
                    <label for="weights-progress">"Fetching the encoder's weights "</label>
                    <progress id="weights-progress" max="100" value=percent.unwrap_or(0.0)>
                        {percent.map(|p| format!("{p}%"))}
                    </progress>
                    {format!(" {:.1} MB", loaded as f64 / 1e6)}
                </p>
            }
            .into_any()
        }
        EncoderStatus::Ready {
            backend,
            threads,
            seconds,
            from_cache,
            no_webgpu,
        } => view! {
            <p class="status" data-encoder-backend=format!("{backend:?}") data-encoder-threads=threads.to_string()>
                "The encoder runs in your browser on " <strong>{backend.label()}</strong>
                {format!(
                    "{}, ready in {seconds:.1} s{}.",
                    if threads > 1 { format!(" ({threads} threads)") } else { String::new() },
                    if from_cache { " (weights from the browser's cache)" } else { "" }
                )}
                {no_webgpu.map(|why| view! { " " <span class="note">{format!("No WebGPU ({why}): the CPU is used.")}</span> })}
            </p>
        }
        .into_any(),
        EncoderStatus::Unavailable(why) => view! {
            <p class="status" role="status">
                {format!("The encoder cannot run in this browser ({why}): sounds are encoded on the server.")}
            </p>
        }
        .into_any(),
    }
    }
}

/// Recording, the file picker and dropping a file.
#[component]
pub fn SoundInput(engine: EngineHandle) -> impl IntoView {
    let studio = expect_context::<Studio>();
    let dragging = RwSignal::new(false);
    let on_file = move |event: ev::Event| {
        if let Some(file) = first_file(&event) {
            engine.with_value(|engine| engine.take_file(file, Slot::First));
        }
    };
    let on_drop = move |event: DragEvent| {
        event.prevent_default();
        dragging.set(false);
        let file = event
            .data_transfer()
            .and_then(|transfer| transfer.files())
            .and_then(|files| files.get(0));
        if let Some(file) = file {
            engine.with_value(|engine| engine.take_file(file, Slot::First));
        }
    };
    view! {
        <section aria-labelledby="sound-heading">
            <h2 id="sound-heading">"1. Your sound"</h2>
            <div
                class="drop"
                class:dragging=move || dragging.get()
                on:dragover=move |event: DragEvent| {
                    event.prevent_default();
                    dragging.set(true);
                }
                on:dragleave=move |_| dragging.set(false)
                on:drop=on_drop
            >
                <RecordButton engine=engine/>
                <span class="or">"or"</span>
                <label class="button" for="sound-file">"Choose a sound file"</label>
                <input id="sound-file" class="visually-hidden" type="file" accept="audio/*" on:change=on_file/>
                <span class="hint">"or drop one here (WAV, MP3, Ogg, FLAC, M4A…)"</span>
            </div>
            {move || studio.input_problem.get().map(|problem| view! {
                <p class="problem" role="alert">{problem}</p>
            })}
        </section>
    }
}

/// The microphone's button, its countdown and level meter.
#[component]
fn RecordButton(engine: EngineHandle) -> impl IntoView {
    let studio = expect_context::<Studio>();
    let label = move || match studio.microphone.get() {
        Microphone::Idle => "● Record".to_string(),
        Microphone::Asking => "Asking for the microphone…".to_string(),
        Microphone::Recording { seconds, .. } => {
            format!(
                "■ Stop ({:.0} s left)",
                (LIMIT_SECONDS - seconds).max(0.0).ceil()
            )
        }
    };
    let level = move || match studio.microphone.get() {
        Microphone::Recording { peak, .. } => peak,
        _ => 0.0,
    };
    view! {
        <button
            type="button"
            class="record"
            aria-pressed=move || matches!(studio.microphone.get(), Microphone::Recording { .. }).to_string()
            on:click=move |_| engine.with_value(|engine| engine.toggle_recording())
        >
            {label}
        </button>
        <Show when=move || matches!(studio.microphone.get(), Microphone::Recording { .. })>
            <meter class="level" aria-label="Microphone level" min="0" max="1" low="0.05" high="0.8" value=level></meter>
        </Show>
    }
}

/// The sound's waveform, the choice of its 10 s, its volume, and the spectrogram the model reads.
#[component]
pub fn SoundView() -> impl IntoView {
    let studio = expect_context::<Studio>();
    let waveform = NodeRef::<Canvas>::new();
    let spectrogram = NodeRef::<Canvas>::new();
    Effect::new(move |_| {
        if let (Some(canvas), Some(sound)) = (waveform.get(), studio.first.get()) {
            crate::draw::waveform(&canvas, &sound.samples, sound.start);
        }
    });
    Effect::new(move |_| {
        if let (Some(canvas), Some(values)) = (spectrogram.get(), studio.spectrogram.get()) {
            crate::draw::spectrogram(&canvas, &values);
        }
    });
    view! {
        <Show when=move || studio.first.with(Option::is_some)>
            <section aria-labelledby="heard-heading">
                <h2 id="heard-heading">"What the model hears"</h2>
                <p>{move || studio.first.get().map(|s| format!("{} ({:.1} s)", s.name, s.seconds()))}</p>
                <canvas node_ref=waveform class="waveform" width="960" height="120" role="img"
                    aria-label="The sound's waveform; the shaded part is the 10 seconds the model hears"></canvas>
                <WindowChoice/>
                <Slider label="Volume" id="volume" min=0.0 max=3.0 step=0.05 value=studio.first_volume/>
                <canvas node_ref=spectrogram class="spectrogram" width="1004" height="257" role="img"
                    aria-label="The log-spectrogram the model reads: time to the right, pitch upwards"></canvas>
                <p class="status" role="status">{move || studio.encoded_note.get()}</p>
            </section>
        </Show>
    }
}

/// For a sound longer than 10 s: where its 10 s start.
#[component]
fn WindowChoice() -> impl IntoView {
    let studio = expect_context::<Studio>();
    let longest_start = move || {
        studio.first.with(|s| {
            s.as_ref()
                .map_or(0.0, |s| (s.seconds() - LIMIT_SECONDS).max(0.0))
        })
    };
    let set_start = move |event: ev::Event| {
        let seconds: f64 = event_target_value(&event).parse().unwrap_or(0.0);
        studio.first.update(|sound| {
            if let Some(sound) = sound {
                *sound = Sound {
                    start: (seconds * 16_000.0) as usize,
                    ..sound.clone()
                };
            }
        });
    };
    view! {
        <Show when=move || { longest_start() > 0.0 }>
            <p>
                <label for="window-start">"The 10 seconds the model hears start at "</label>
                <input id="window-start" type="range" min="0" step="0.1"
                    max=move || format!("{:.1}", longest_start())
                    prop:value=move || studio.first.with(|s| s.as_ref().map_or(0.0, |s| s.start as f64 / 16_000.0))
                    on:change=set_start/>
                {move || studio.first.with(|s| s.as_ref().map(|s| format!(" {:.1} s", s.start as f64 / 16_000.0)))}
            </p>
        </Show>
    }
}

/// A labelled range input bound to a signal; the signal changes when the slider is let go, so a drag
/// regenerates once.
#[component]
fn Slider(
    label: &'static str,
    id: &'static str,
    min: f64,
    max: f64,
    step: f64,
    value: RwSignal<f64>,
    /// Decimals shown beside the slider.
    #[prop(default = 2)]
    digits: usize,
) -> impl IntoView {
    let shown = RwSignal::new(value.get_untracked());
    Effect::new(move |_| shown.set(value.get()));
    view! {
        <p class="slider">
            <label for=id>{label}</label>
            <input id=id type="range" min=min max=max step=step
                prop:value=move || shown.get()
                on:input=move |event| shown.set(event_target_value(&event).parse().unwrap_or(0.0))
                on:change=move |event| value.set(event_target_value(&event).parse().unwrap_or(0.0))/>
            <output for=id>{move || format!("{:.digits$}", shown.get())}</output>
        </p>
    }
}

/// A second sound with its own volume, and a picture mixed in.
#[component]
pub fn Mixer(engine: EngineHandle) -> impl IntoView {
    let studio = expect_context::<Studio>();
    let on_second = move |event: ev::Event| {
        if let Some(file) = first_file(&event) {
            engine.with_value(|engine| engine.take_file(file, Slot::Second));
        }
    };
    let on_picture = move |event: ev::Event| {
        if let Some(file) = first_file(&event) {
            engine.with_value(|engine| engine.take_picture(file));
        }
    };
    view! {
        <Show when=move || studio.first.with(Option::is_some)>
            <section aria-labelledby="mix-heading">
                <h2 id="mix-heading">"2. Mix (optional)"</h2>
                <p>
                    <label class="button" for="second-file">"Add a second sound"</label>
                    <input id="second-file" class="visually-hidden" type="file" accept="audio/*" on:change=on_second/>
                    {move || studio.second.get().map(|s| view! {
                        " " {s.name} " "
                        <button type="button" on:click=move |_| studio.second.set(None)>"Remove"</button>
                    })}
                </p>
                <Show when=move || studio.second.with(Option::is_some)>
                    <Slider label="Its volume" id="second-volume" min=0.0 max=3.0 step=0.05 value=studio.second_volume/>
                </Show>
                // A diffusion model's latents live in CLIP's image space, for which this server has no encoder.
                <Show when=move || studio.diffusion_controls().is_none()>
                    <p>
                        <label class="button" for="picture-file">"Mix in a picture"</label>
                        <input id="picture-file" class="visually-hidden" type="file" accept="image/*" on:change=on_picture/>
                        {move || studio.picture.get().map(|p| view! {
                            " " {p.name} " "
                            <button type="button" on:click=move |_| studio.picture.set(None)>"Remove"</button>
                        })}
                    </p>
                    <Show when=move || studio.picture.with(Option::is_some)>
                        <Slider label="Sound ← → picture" id="lambda" min=0.0 max=1.0 step=0.05 value=studio.lambda/>
                    </Show>
                </Show>
            </section>
        </Show>
    }
}

/// The generation's controls and its pictures, with the share link.
#[component]
pub fn Pictures(engine: EngineHandle) -> impl IntoView {
    let studio = expect_context::<Studio>();
    let count = RwSignal::new(studio.count.get_untracked() as f64);
    Effect::new(move |_| {
        studio
            .count
            .set(count.get().round().clamp(1.0, 16.0) as usize)
    });
    view! {
        <section aria-labelledby="pictures-heading">
            <h2 id="pictures-heading">"3. Pictures"</h2>
            <div class="controls">
                <Slider label="How many" id="count" min=1.0 max=16.0 step=1.0 value=count digits=0/>
                <Show when=move || studio.diffusion_controls().is_none()>
                    <p>
                        <input id="truncate" type="checkbox" prop:checked=move || studio.truncate.get()
                            on:change=move |event| studio.truncate.set(event_target_checked(&event))/>
                        <label for="truncate">"Truncation (plainer, more typical pictures)"</label>
                    </p>
                    <Show when=move || studio.truncate.get()>
                        <Slider label="Truncation" id="truncation" min=0.1 max=2.0 step=0.05 value=studio.truncation/>
                    </Show>
                </Show>
                {move || studio.diffusion_controls().map(|controls| view! {
                    <Slider label="Steps" id="steps" min=1.0 max=controls.max_steps as f64 step=1.0
                        value=studio.steps digits=0/>
                    <Slider label="Guidance" id="guidance" min=0.0 max=f64::from(controls.max_guidance)
                        step=0.5 value=studio.guidance/>
                })}
                <p>
                    <label for="seed">"Seed "</label>
                    <input id="seed" type="number" min="0" prop:value=move || studio.seed.get().to_string()
                        on:change=move |event| {
                            if let Ok(seed) = event_target_value(&event).parse() {
                                studio.seed.set(seed);
                            }
                        }/>
                    <button type="button" on:click=move |_| studio.seed.set(crate::state::new_seed())
                        disabled=move || studio.sound_latent.with(Option::is_none)>
                        "Again"
                    </button>
                </p>
                <p>
                    <input id="server-encoding" type="checkbox" prop:checked=move || studio.encode_on_server.get()
                        on:change=move |event| studio.encode_on_server.set(event_target_checked(&event))/>
                    <label for="server-encoding">"Encode on the server (your sound, mixed, is sent to it)"</label>
                </p>
            </div>
            <ProgressLine engine=engine/>
            <ul class="pictures" aria-live="polite">
                <For each=move || studio.images.get().into_iter().enumerate() key=|(i, url)| (*i, url.clone()) let:item>
                    <li>
                        <img data-generated src=item.1.clone() alt=format!("picture {} of the sound", item.0 + 1)
                            width="256" height="256"/>
                    </li>
                </For>
                {move || {
                    let finished = studio.images.with(Vec::len);
                    studio.previews.get().into_iter().enumerate().skip(finished)
                        .filter_map(|(i, preview)| preview.map(|url| view! {
                            <li>
                                <img data-preview src=url alt=format!("picture {} taking shape", i + 1)
                                    width="256" height="256"/>
                            </li>
                        }))
                        .collect_view()
                }}
            </ul>
            <ShareLine/>
        </section>
    }
}

/// What the generation is doing, and any failure with what to do about it.
#[component]
fn ProgressLine(engine: EngineHandle) -> impl IntoView {
    let studio = expect_context::<Studio>();
    move || {
        match studio.progress.get() {
        Progress::Idle => {
            view! { <p class="status" role="status">"Record or choose a sound to begin."</p> }.into_any()
        }
        Progress::Encoding => view! { <p class="status" role="status">"Listening to the sound…"</p> }.into_any(),
        Progress::Generating => view! {
            <p class="status" role="status">
                {move || format!("Drawing… {} of {}", studio.images.with(Vec::len), studio.count.get())}
            </p>
        }
        .into_any(),
        Progress::Done => view! { <p class="status" role="status">"Done."</p> }.into_any(),
        Progress::Waiting(seconds) => view! {
            <p class="problem" role="alert" data-retry=seconds.to_string()>
                {format!("The server is busy: trying again in {seconds} s.")}
            </p>
        }
        .into_any(),
        Progress::Failed(why) => view! {
            <p class="problem" role="alert">
                {why} " "
                <button type="button" on:click=move |_| engine.with_value(|engine| engine.generate())>"Try again"</button>
            </p>
        }
        .into_any(),
    }
    }
}

/// The share link and its copy button.
#[component]
fn ShareLine() -> impl IntoView {
    let studio = expect_context::<Studio>();
    let copied = RwSignal::new(false);
    let absolute = move || {
        let origin = web_sys::window()
            .and_then(|w| w.location().origin().ok())
            .unwrap_or_default();
        studio.share.get().map(|share| format!("{origin}{share}"))
    };
    let copy = move |_| {
        if let (Some(link), Some(window)) = (absolute(), web_sys::window()) {
            let _ = window.navigator().clipboard().write_text(&link);
            copied.set(true);
        }
    };
    move || {
        absolute().map(|link| {
            copied.set(false);
            view! {
                <p class="share">
                    "Share: " <a data-share href=link.clone()>{link.clone()}</a> " "
                    <button type="button" on:click=copy>
                        {move || if copied.get() { "Copied" } else { "Copy link" }}
                    </button>
                </p>
            }
        })
    }
}

/// The visitor's recent generations, from this browser's storage.
#[component]
pub fn RecentList() -> impl IntoView {
    let studio = expect_context::<Studio>();
    view! {
        <Show when=move || studio.recent.with(|r| !r.is_empty())>
            <section aria-labelledby="recent-heading">
                <h2 id="recent-heading">"Your recent pictures"</h2>
                <ul class="recent">
                    <For each=move || studio.recent.get() key=|r| r.id.clone() let:entry>
                        <li>
                            <a href=entry.share.clone()>
                                <img src=entry.picture.clone() alt=format!("the first of {} pictures", entry.count) width="96" height="96"/>
                            </a>
                        </li>
                    </For>
                </ul>
            </section>
        </Show>
    }
}

fn first_file(event: &ev::Event) -> Option<web_sys::File> {
    let input: HtmlInputElement = event.target()?.dyn_into().ok()?;
    let file = input.files()?.get(0);
    // The same file chosen again must fire `change` again.
    input.set_value("");
    file
}
