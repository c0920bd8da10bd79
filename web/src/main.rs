//! The page (Leptos, rendered in the browser, built by trunk from the root `index.html`).

mod api;
mod app;
mod browser_decode;
mod draw;
mod encoder;
mod engine;
mod history;
mod launch;
mod mixing;
mod recording;
mod sse;
mod state;
mod views;
mod wav;

fn main() {
    show_panics();
    leptos::mount::mount_to_body(app::App);
}

/// A panic ends the page's wasm: say so on the page instead of leaving it half drawn.
fn show_panics() {
    std::panic::set_hook(Box::new(|info| {
        console_error_panic_hook::hook(info);
        let shown = web_sys::window()
            .and_then(|w| w.document())
            .and_then(|d| d.get_element_by_id("fatal"));
        if let Some(element) = shown {
            element.set_text_content(Some(&format!(
                "Something went wrong in the page ({info}). Reload it to start again."
            )));
            let _ = element.remove_attribute("hidden");
        }
    }));
}
