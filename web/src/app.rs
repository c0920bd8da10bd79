//! The page: the server's model and the encoder at the top, then the sound, the mix, the pictures and the
//! visitor's recent generations.

use leptos::prelude::*;

use crate::engine::{Engine, EngineHandle};
use crate::state::Studio;
use crate::views::{EncoderLine, Mixer, Pictures, RecentList, SoundInput, SoundView};

#[component]
pub fn App() -> impl IntoView {
    let studio = Studio::new();
    provide_context(studio);
    let engine: EngineHandle = StoredValue::new_local(Engine::new(studio));
    engine.with_value(|engine| engine.start());

    // A changed sound, mix or encoder encodes again; a new latent or picture control generates again.
    let encoder_settled = Memo::new(move |_| {
        !matches!(
            studio.encoder.get(),
            crate::state::EncoderStatus::Starting | crate::state::EncoderStatus::Fetching { .. }
        )
    });
    Effect::new(move |_| {
        studio.first.track();
        studio.second.track();
        studio.first_volume.track();
        studio.second_volume.track();
        studio.encode_on_server.track();
        encoder_settled.track();
        engine.with_value(|engine| engine.encode());
    });
    Effect::new(move |_| {
        studio.sound_latent.track();
        studio.picture.track();
        studio.lambda.track();
        studio.count.track();
        studio.truncate.track();
        studio.truncation.track();
        studio.steps.track();
        studio.guidance.track();
        studio.seed.track();
        engine.with_value(|engine| engine.generate());
    });

    view! {
        <header class="masthead">
            <h1>"sound2vision"</h1>
            <p class="lede">"Give a sound; see pictures of what it is."</p>
            <ServerLine/>
            <EncoderLine/>
        </header>
        <main>
            <SoundInput engine=engine/>
            <SoundView/>
            <Mixer engine=engine/>
            <Pictures engine=engine/>
            <RecentList/>
        </main>
        <footer>
            <p>
                "A Rust implementation of "
                <cite>"Sound2Vision: Generating Diverse Visuals from Audio through Cross-Modal Latent Alignment"</cite>
                " (Sung-Bin et al.). Your sound is encoded in your browser; only its latent goes to the server, unless you choose otherwise."
            </p>
        </footer>
    }
}

/// The model this server serves, or why there is none.
#[component]
fn ServerLine() -> impl IntoView {
    let studio = expect_context::<Studio>();
    move || {
        match (studio.served.get(), studio.server_problem.get()) {
        (Some(served), _) => view! {
            <p class="status">
                "Model " <strong>{served.model.id}</strong> " (version " {served.model.version} "): "
                {served.resolution} " × " {served.resolution} " pictures."
                {served.data_notice.map(|url| view! {
                    " " <a href=url class="data-notice" target="_blank" rel="noopener">"What it was trained on"</a>
                })}
            </p>
        }
        .into_any(),
        (None, Some(problem)) => view! {
            <p class="problem" role="alert">
                "The server cannot be reached (" {problem} "). Check that s2v-server is running, then reload the page."
            </p>
        }
        .into_any(),
        (None, None) => view! { <p class="status">"Asking the server for its model…"</p> }.into_any(),
    }
    }
}
