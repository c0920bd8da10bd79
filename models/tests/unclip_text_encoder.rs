//! The empty prompt's states against transformers' `CLIPTextModel` on a tiny random model
//! (`tests/data/unclip/text_encoder`, written by `make_text_encoder_fixture.py`), tokenised from the
//! tokenizer folder's special tokens as diffusers' pipelines tokenise "".

use burn::backend::Flex;
use s2v_models::unclip::text_encoder::{TextEncoder, empty_prompt_ids};
use s2v_tests::{checkout, read_values};

fn data(part: &str) -> std::path::PathBuf {
    checkout().join("tests/data/unclip").join(part)
}

#[test]
fn the_empty_prompts_states_match_transformers() {
    let ids = empty_prompt_ids(&data("tokenizer")).unwrap();
    assert_eq!(ids, [38, 39, 0, 0, 0, 0, 0, 0]);
    let encoder =
        TextEncoder::<Flex>::from_dir(&data("text_encoder"), false, &Default::default()).unwrap();
    let states: Vec<f32> = encoder.forward(&ids).unwrap().into_data().to_vec().unwrap();
    let expected = read_values(&data("text_encoder/empty_prompt_states.npy"));
    assert_eq!(states.len(), expected.len());
    let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = states
        .iter()
        .zip(&expected)
        .fold(0f32, |m, (a, e)| m.max((a - e).abs()));
    assert!(diff / scale < 1e-4, "relative error {}", diff / scale);
}

#[test]
fn token_ids_outside_the_model_are_refused() {
    let encoder =
        TextEncoder::<Flex>::from_dir(&data("text_encoder"), false, &Default::default()).unwrap();
    assert!(encoder.forward(&[]).is_err());
    assert!(encoder.forward(&[40]).is_err());
    assert!(encoder.forward(&[0; 9]).is_err());
}

#[test]
fn files_with_the_older_text_model_prefix_load_too() {
    // transformers before 5 saved every name under `text_model.`.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        data("text_encoder/config.json"),
        dir.path().join("config.json"),
    )
    .unwrap();
    let bytes = std::fs::read(data("text_encoder/model.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let renamed: Vec<(String, safetensors::tensor::TensorView<'_>)> = file
        .tensors()
        .into_iter()
        .map(|(name, view)| (format!("text_model.{name}"), view))
        .collect();
    safetensors::serialize_to_file(renamed, None, &dir.path().join("model.safetensors")).unwrap();
    let ids = empty_prompt_ids(&data("tokenizer")).unwrap();
    let old = TextEncoder::<Flex>::from_dir(dir.path(), false, &Default::default()).unwrap();
    let new =
        TextEncoder::<Flex>::from_dir(&data("text_encoder"), false, &Default::default()).unwrap();
    let states = |e: &TextEncoder<Flex>| -> Vec<f32> {
        e.forward(&ids).unwrap().into_data().to_vec().unwrap()
    };
    assert_eq!(states(&old), states(&new));
}
