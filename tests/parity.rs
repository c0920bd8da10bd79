//! Parity with the outputs of the published reference code (`../shared/fixtures/reference`), at the tolerances
//! its README gives.

use burn::backend::Flex;
use burn::prelude::*;
use s2v_models::checkpoint::TorchStateDict;
use s2v_models::{AudioEncoder, FromTorch, Generator, ImageEncoder, NetworkModule};
use s2v_tests::*;

type B = Flex;

fn spectrogram_of(wave: &str) -> Vec<f32> {
    let bytes = std::fs::read(fixture(&format!("{wave}.wav"))).unwrap();
    s2v_shared::audio::spectrogram_from_bytes(&bytes, Some("wav"))
        .unwrap()
        .data
}

#[test]
fn spectrogram_matches_scipy() {
    for wave in WAVES {
        let reference = npy(&format!("{wave}.spectrogram.npy"));
        assert_eq!(reference.shape(), &[257, 1004]);
        let err = max_abs_diff(&spectrogram_of(wave), reference.as_slice().unwrap());
        eprintln!("spectrogram {wave}: max abs error {err:e}");
        assert!(err < 1e-3, "{wave}: spectrogram max abs error {err}");
    }
}

#[test]
fn audio_encoder_matches_avenet() {
    let device = Default::default();
    let sd = TorchStateDict::read(&fixture("audio_encoder.pth")).unwrap();
    let encoder = AudioEncoder::<B>::from_torch(sd, &device).unwrap();
    assert_eq!(encoder.config().stage_widths, vec![16, 32, 64, 128]);
    for wave in WAVES {
        // The reference spectrogram as input isolates the network from the front end.
        let input = fixture_tensor(&format!("{wave}.spectrogram.npy"), [1, 1, 257, 1004]);
        let out = encoder
            .forward(input)
            .into_data()
            .into_vec::<f32>()
            .unwrap();
        let reference = npy(&format!("{wave}.audio_embedding.npy"));
        let err = relative_error(&out, reference.as_slice().unwrap());
        eprintln!("audio encoder {wave}: relative error {err:e}");
        assert!(err < 1e-3, "{wave}: embedding relative error {err}");
    }
}

#[test]
fn audio_pipeline_end_to_end_matches_the_reference() {
    let device = Default::default();
    let encoder = AudioEncoder::<B>::from_torch(
        TorchStateDict::read(&fixture("audio_encoder.pth")).unwrap(),
        &device,
    )
    .unwrap();
    for wave in WAVES {
        let input = Tensor::<B, 4>::from_data(
            TensorData::new(spectrogram_of(wave), [1, 1, 257, 1004]),
            &device,
        );
        let out = encoder
            .forward(input)
            .into_data()
            .into_vec::<f32>()
            .unwrap();
        let err = relative_error(
            &out,
            npy(&format!("{wave}.audio_embedding.npy"))
                .as_slice()
                .unwrap(),
        );
        eprintln!("wav to embedding {wave}: relative error {err:e}");
        assert!(
            err < 1e-3,
            "{wave}: end-to-end embedding relative error {err}"
        );
    }
}

#[test]
fn image_encoder_matches_torchvision_resnet50() {
    let device = Default::default();
    let sd = TorchStateDict::read(&fixture("image_encoder.pth.tar")).unwrap();
    let encoder = ImageEncoder::<B>::from_torch(sd, &device).unwrap();
    let input = fixture_tensor("image_input.npy", [2, 3, 224, 224]);
    let out = encoder
        .forward(input)
        .into_data()
        .into_vec::<f32>()
        .unwrap();
    let err = relative_error(&out, npy("image_features.npy").as_slice().unwrap());
    eprintln!("image encoder: relative error {err:e}");
    assert!(err < 1e-3, "image features relative error {err}");
}

#[test]
fn generator_matches_icgan_biggan() {
    let device = Default::default();
    let sd = TorchStateDict::read(&fixture("generator.pth")).unwrap();
    let generator = Generator::<B>::from_torch(sd, &device).unwrap();
    let config = generator.config();
    assert_eq!(
        (config.resolution(), config.dim_z(), config.shared_dim_feat),
        (128, 120, 64)
    );
    assert_eq!(config.attention, vec![false, false, false, true, false]);
    // The fixture's features are not normalised: the generator normalises them itself.
    let z = fixture_tensor("generator_noise.npy", [3, 120]);
    let f = fixture_tensor("generator_features.npy", [3, 2048]);
    let out = generator.forward(z, f);
    assert_eq!(out.dims(), [3, 3, 128, 128]);
    let err = max_abs_diff(
        &out.into_data().into_vec::<f32>().unwrap(),
        npy("generator_output.npy").as_slice().unwrap(),
    );
    eprintln!("generator: max abs error {err:e}");
    assert!(err < 2e-3, "generator max abs error {err}");
}

#[test]
fn loss_matches_infonce_with_l2() {
    let audio = fixture_tensor("loss_audio.npy", [8, 2048]);
    let visual = fixture_tensor("loss_visual.npy", [8, 2048]);
    let loss = s2v_models::loss::info_nce_l2(audio, visual).into_scalar();
    let reference = npy("loss_value.npy").iter().copied().next().unwrap();
    eprintln!(
        "loss: {loss} vs reference {reference}, error {:e}",
        (loss - reference).abs()
    );
    assert!(
        (loss - reference).abs() < 1e-4,
        "loss {loss} vs reference {reference}"
    );
}
