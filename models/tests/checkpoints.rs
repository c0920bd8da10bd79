//! Checkpoint import and export: the own format round-trips exactly (or within f16 precision), and every
//! checkpoint that does not fit the network fails with a message that names the tensor.

use std::collections::HashMap;

use burn::backend::Flex;
use burn::prelude::*;
use s2v_models::checkpoint::{
    CheckpointError, TorchStateDict, load_native, read_native_header, to_native_bytes,
};
use s2v_models::*;
use s2v_tests::*;

type B = Flex;

/// The raw tensors of a fixture, to tamper with.
fn read_state_dict(name: &str) -> HashMap<String, s2v_models::checkpoint::TensorSnapshot> {
    s2v_models::checkpoint::read_torch_tensors(&fixture(name)).unwrap()
}

fn generate(generator: &Generator<B>) -> Vec<f32> {
    let out = generator.forward(
        fixture_tensor("generator_noise.npy", [3, 120]),
        fixture_tensor("generator_features.npy", [3, 2048]),
    );
    out.into_data().into_vec::<f32>().unwrap()
}

#[test]
fn generator_round_trips_through_the_native_format() {
    let device = Default::default();
    let torch = Generator::<B>::from_torch(
        TorchStateDict::read(&fixture("generator.pth")).unwrap(),
        &device,
    )
    .unwrap();
    let reference = generate(&torch);

    let bytes = to_native_bytes(&torch, false).unwrap();
    let header = read_native_header(&bytes).unwrap();
    assert_eq!(
        (header.network.as_str(), header.precision.as_str()),
        ("generator", "f32")
    );
    let native: Generator<B> = load_native(&bytes, &device).unwrap();
    assert_eq!(native.config(), torch.config());
    assert!(
        max_abs_diff(&generate(&native), &reference) == 0.0,
        "f32 export must be exact"
    );

    let half = to_native_bytes(&torch, true).unwrap();
    assert!(
        half.len() < bytes.len() * 6 / 10,
        "f16 file {} bytes vs f32 {}",
        half.len(),
        bytes.len()
    );
    let native16: Generator<B> = load_native(&half, &device).unwrap();
    let err = max_abs_diff(
        &generate(&native16),
        npy("generator_output.npy").as_slice().unwrap(),
    );
    assert!(err < 5e-3, "f16 generator max abs error {err}");
}

#[test]
fn encoders_round_trip_through_the_native_format() {
    let device = Default::default();
    let audio = AudioEncoder::<B>::from_torch(
        TorchStateDict::read(&fixture("audio_encoder.pth")).unwrap(),
        &device,
    )
    .unwrap();
    let input = fixture_tensor("harmonic_3p7s.spectrogram.npy", [1, 1, 257, 1004]);
    let native: AudioEncoder<B> =
        load_native(&to_native_bytes(&audio, false).unwrap(), &device).unwrap();
    assert_eq!(native.config(), audio.config());
    let (a, b) = (native.forward(input.clone()), audio.forward(input));
    assert_eq!(
        max_abs_diff(
            &a.into_data().into_vec::<f32>().unwrap(),
            &b.into_data().into_vec::<f32>().unwrap()
        ),
        0.0
    );

    let image = ImageEncoder::<B>::from_torch(
        TorchStateDict::read(&fixture("image_encoder.pth.tar")).unwrap(),
        &device,
    )
    .unwrap();
    let native: ImageEncoder<B> =
        load_native(&to_native_bytes(&image, false).unwrap(), &device).unwrap();
    let x = fixture_tensor("image_input.npy", [2, 3, 224, 224]);
    let (a, b) = (native.forward(x.clone()), image.forward(x));
    assert_eq!(
        max_abs_diff(
            &a.into_data().into_vec::<f32>().unwrap(),
            &b.into_data().into_vec::<f32>().unwrap()
        ),
        0.0
    );
}

#[test]
fn a_native_checkpoint_of_another_network_is_refused() {
    let device = Default::default();
    let audio = AudioEncoder::<B>::from_torch(
        TorchStateDict::read(&fixture("audio_encoder.pth")).unwrap(),
        &device,
    )
    .unwrap();
    let err = load_native::<B, Generator<B>>(&to_native_bytes(&audio, false).unwrap(), &device)
        .unwrap_err();
    assert!(
        matches!(
            err,
            CheckpointError::WrongNetwork {
                expected: "generator",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_torch_checkpoint_of_another_network_names_the_missing_tensor() {
    let device = Default::default();
    let err = Generator::<B>::from_torch(
        TorchStateDict::read(&fixture("audio_encoder.pth")).unwrap(),
        &device,
    )
    .unwrap_err();
    assert!(err.to_string().contains("shared_feat.weight"), "{err}");
    let err = AudioEncoder::<B>::from_torch(
        TorchStateDict::read(&fixture("generator.pth")).unwrap(),
        &device,
    )
    .unwrap_err();
    assert!(err.to_string().contains("conv1.weight"), "{err}");
    // The image encoder shares the audio encoder's stem and layer names, but has no `fc`.
    let err = AudioEncoder::<B>::from_torch(
        TorchStateDict::read(&fixture("image_encoder.pth.tar")).unwrap(),
        &device,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            CheckpointError::MissingTensor { .. } | CheckpointError::UnexpectedTensors { .. }
        ),
        "{err}"
    );
}

#[test]
fn a_tensor_of_the_wrong_shape_is_named_with_both_shapes() {
    let mut tensors = read_state_dict("audio_encoder.pth");
    let good = tensors["audnet.layer2.0.conv2.weight"].clone();
    let wrong = TensorData::new(vec![0.0f32; 32 * 32 * 3 * 2], [32, 32, 3, 2]);
    tensors.insert(
        "audnet.layer2.0.conv2.weight".into(),
        s2v_models::checkpoint::TensorSnapshot::from_data(
            wrong,
            vec![],
            vec![],
            Default::default(),
        ),
    );
    assert_eq!(good.shape.to_vec(), vec![32, 32, 3, 3]);
    let err =
        AudioEncoder::<B>::from_torch(TorchStateDict::from_tensors(tensors), &Default::default())
            .unwrap_err()
            .to_string();
    assert!(
        err.contains("layer2.0.conv2.weight")
            && err.contains("[32, 32, 3, 2]")
            && err.contains("[32, 32, 3, 3]"),
        "{err}"
    );
}

#[test]
fn unknown_tensors_are_not_skipped_silently() {
    let mut tensors = read_state_dict("generator.pth");
    let extra = TensorData::new(vec![1.0f32; 4], [4]);
    tensors.insert(
        "blocks.9.0.conv1.bias".into(),
        s2v_models::checkpoint::TensorSnapshot::from_data(
            extra,
            vec![],
            vec![],
            Default::default(),
        ),
    );
    let err =
        Generator::<B>::from_torch(TorchStateDict::from_tensors(tensors), &Default::default())
            .unwrap_err()
            .to_string();
    assert!(err.contains("blocks.9.0.conv1.bias"), "{err}");
}

#[test]
fn nan_weights_are_refused() {
    let mut tensors = read_state_dict("audio_encoder.pth");
    let nan = TensorData::new(vec![f32::NAN; 2048], [2048]);
    tensors.insert(
        "audnet.fc.bias".into(),
        s2v_models::checkpoint::TensorSnapshot::from_data(nan, vec![], vec![], Default::default()),
    );
    let err =
        AudioEncoder::<B>::from_torch(TorchStateDict::from_tensors(tensors), &Default::default())
            .unwrap_err()
            .to_string();
    assert!(
        err.contains("fc.bias") && err.contains("non-finite"),
        "{err}"
    );
}

#[test]
fn corrupt_checkpoint_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.pth");
    std::fs::write(&garbage, b"definitely not a checkpoint").unwrap();
    assert!(matches!(
        load_checkpoint::<B, Generator<B>>(&garbage, &Default::default()),
        Err(CheckpointError::UnknownFormat)
    ));

    let bytes = std::fs::read(fixture("generator.pth")).unwrap();
    let truncated = dir.path().join("truncated.pth");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    assert!(load_checkpoint::<B, Generator<B>>(&truncated, &Default::default()).is_err());

    let native = to_native_bytes(
        &Generator::<B>::from_torch(
            TorchStateDict::read(&fixture("generator.pth")).unwrap(),
            &Default::default(),
        )
        .unwrap(),
        false,
    )
    .unwrap();
    let cut = dir.path().join("cut.safetensors");
    std::fs::write(&cut, &native[..native.len() / 2]).unwrap();
    assert!(load_checkpoint::<B, Generator<B>>(&cut, &Default::default()).is_err());

    let missing = dir.path().join("missing.pth");
    assert!(matches!(
        load_checkpoint::<B, Generator<B>>(&missing, &Default::default()),
        Err(CheckpointError::Io { .. })
    ));
}
