//! The encoder worker's entry point (see the library).

fn main() {
    s2v_web_encoder::run();
}
