//! Sound2Vision's audio encoder (`fc` 512 -> 1024, ReLU, `fc2`): parity with the authors' `ResNet_` at narrow
//! widths (`tests/data/sound2vision`, written by `make_fixture.py` there from their module) on the reference
//! fixtures' spectrogram, its native round trip, the refusal of an encoder without `fc2`, and its loss
//! against the authors' `InfoNCE_with_L2_sound2vision`.

use burn::backend::Flex;
use burn::prelude::*;
use s2v_models::checkpoint::{load_native, to_native_bytes};
use s2v_models::unclip::audio::load_sound2vision_encoder;
use s2v_models::{AudioEncoder, CheckpointError, NetworkModule};
use s2v_tests::{checkout, fixture, max_relative_error, read_values};

const TOLERANCE: f32 = 1e-4;

fn encoder() -> AudioEncoder<Flex> {
    let path = checkout().join("tests/data/sound2vision/audio_encoder_fc2.pth");
    load_sound2vision_encoder(&path, &Default::default()).unwrap()
}

fn embed(encoder: &AudioEncoder<Flex>) -> Vec<f32> {
    let spectrogram = read_values(&fixture("tone_chirp_10s.spectrogram.npy"));
    let input = Tensor::from_data(
        TensorData::new(spectrogram, [1, 1, 257, 1004]),
        &Default::default(),
    );
    encoder.forward(input).into_data().to_vec().unwrap()
}

#[test]
fn the_fc2_encoder_matches_the_authors_module() {
    let encoder = encoder();
    let config = encoder.config();
    assert!(config.fc2);
    assert_eq!(config.embedding_dim, 32);
    let expected = read_values(&checkout().join("tests/data/sound2vision/embedding.npy"));
    let embedding = embed(&encoder);
    // fc2 has no ReLU after it: the reference's output has negative values, and so must this one.
    assert!(embedding.iter().any(|v| *v < 0.0));
    let error = max_relative_error(&embedding, &expected);
    assert!(error < TOLERANCE, "relative error {error}");
}

#[test]
fn fc2_survives_the_native_format() {
    let encoder = encoder();
    let bytes = to_native_bytes(&encoder, false).unwrap();
    let loaded: AudioEncoder<Flex> = load_native(&bytes, &Default::default()).unwrap();
    assert!(loaded.config().fc2);
    assert_eq!(embed(&loaded), embed(&encoder));
}

#[test]
fn a_sound2scene_encoder_is_refused_where_sound2vision_is_needed() {
    let error =
        load_sound2vision_encoder::<Flex>(&fixture("audio_encoder.pth"), &Default::default())
            .unwrap_err();
    assert!(
        matches!(&error, CheckpointError::MissingTensor { tensor, .. } if tensor == "audnet.fc2.weight"),
        "{error}"
    );
}

#[test]
fn the_loss_matches_the_authors_sound2vision_loss() {
    let read = |name: &str, shape: [usize; 2]| -> Tensor<Flex, 2> {
        let values = read_values(&checkout().join("tests/data/sound2vision").join(name));
        Tensor::from_data(TensorData::new(values, shape), &Default::default())
    };
    let (audio, image) = (
        read("loss_audio.npy", [6, 1024]),
        read("loss_image.npy", [6, 1024]),
    );
    let loss = s2v_models::loss::info_nce_euclidean(audio.clone(), image.clone()).into_scalar();
    let reference = read_values(&checkout().join("tests/data/sound2vision/loss_value.npy"))[0];
    assert!(
        (loss - reference).abs() < 1e-4,
        "loss {loss} vs reference {reference}"
    );
    // Not Sound2Scene's: normalising first gives another value.
    let normalised = s2v_models::loss::info_nce_l2(audio, image).into_scalar();
    assert!(
        (normalised - reference).abs() > 1e-2,
        "{normalised} vs {reference}"
    );
}
