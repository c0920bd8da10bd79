//! The work behind each `s2v` subcommand, generic over the burn backend.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use burn::prelude::*;
use s2v_models::checkpoint::{
    CheckpointFormat, FromTorch, TorchStateDict, load_native, read_native_header, save_native,
};
use s2v_models::generator::sample_noise;
use s2v_models::preprocess::preprocess_image_bytes;
use s2v_models::{AudioEncoder, Generator, ImageEncoder, NetworkKind, NetworkModule};
use s2v_serving::device::OnBackend;
use s2v_serving::networks::{encode_rows, load_network};
use s2v_serving::pictures::{encode_png, to_rgb8};
use s2v_shared::audio::{FREQ_BINS, Spectrogram, TIME_FRAMES, spectrogram_from_bytes};

use crate::arrays::Array;

/// Inputs are processed this many at a time to bound memory.
pub const DEFAULT_BATCH: usize = 8;

/// The normalised log-spectrogram of an audio file.
pub fn spectrogram_of_file(path: &Path) -> anyhow::Result<Spectrogram> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let extension = path.extension().and_then(|e| e.to_str());
    spectrogram_from_bytes(&bytes, extension).with_context(|| format!("{}", path.display()))
}

pub fn write_spectrogram(spectrogram: &Spectrogram, out: &Path) -> anyhow::Result<()> {
    Array {
        shape: Spectrogram::SHAPE.to_vec(),
        data: spectrogram.data.clone(),
    }
    .write(out)
}

/// Runs `encode` over `inputs` (rows of `input_shape` flattened one after another), `batch_size` rows at a
/// time, and stacks the output rows.
fn encode_in_batches<B: Backend>(
    inputs: &[f32],
    input_shape: [usize; 3],
    batch_size: usize,
    device: &B::Device,
    encode: impl Fn(Tensor<B, 4>) -> Tensor<B, 2>,
) -> anyhow::Result<Array> {
    let per_row: usize = input_shape.iter().product();
    let rows = inputs.len() / per_row;
    let outputs = encode_rows(
        rows,
        input_shape,
        batch_size,
        device,
        |i| Ok(inputs[i * per_row..(i + 1) * per_row].to_vec()),
        encode,
    )?;
    Ok(Array {
        shape: vec![rows, outputs.first().map_or(0, Vec::len)],
        data: outputs.into_iter().flatten().collect(),
    })
}

/// `s2v encode-audio`: one embedding row per audio file, the encoder's raw output.
pub struct EncodeAudio {
    /// `None`: the embedded default model.
    pub checkpoint: Option<PathBuf>,
    pub audio: Vec<PathBuf>,
    pub batch_size: usize,
}

impl OnBackend for EncodeAudio {
    type Output = Array;

    fn run<B: Backend>(self, device: B::Device) -> anyhow::Result<Array> {
        // Decode every file first: a bad one fails before any network work.
        let spectrograms = self
            .audio
            .iter()
            .map(|p| spectrogram_of_file(p))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let encoder: AudioEncoder<B> = load_network(self.checkpoint.as_deref(), &device)?;
        let values: Vec<f32> = spectrograms
            .iter()
            .flat_map(|s| s.data.iter().copied())
            .collect();
        encode_in_batches(
            &values,
            [1, FREQ_BINS, TIME_FRAMES],
            self.batch_size,
            &device,
            |x| encoder.forward(x),
        )
    }
}

/// What `s2v encode-image` reads: an already normalised array, or image files.
pub enum ImageInput {
    Normalised(PathBuf),
    Files(Vec<PathBuf>),
}

pub struct EncodeImage {
    /// `None`: the embedded default model.
    pub checkpoint: Option<PathBuf>,
    pub input: ImageInput,
    pub batch_size: usize,
}

impl OnBackend for EncodeImage {
    type Output = Array;

    fn run<B: Backend>(self, device: B::Device) -> anyhow::Result<Array> {
        let encoder: ImageEncoder<B> = load_network(self.checkpoint.as_deref(), &device)?;
        let size = encoder.input_size();
        let per_image = 3 * size * size;
        let images = match &self.input {
            ImageInput::Normalised(path) => {
                let array = Array::read(path)?;
                if array.shape.len() != 4
                    || array.shape[1..] != [3, size, size]
                    || array.shape[0] == 0
                {
                    bail!(
                        "{} has shape {:?}; this encoder reads N x 3 x {size} x {size}",
                        path.display(),
                        array.shape
                    );
                }
                array.data
            }
            ImageInput::Files(paths) => {
                let mut data = Vec::with_capacity(paths.len() * per_image);
                for path in paths {
                    let bytes = std::fs::read(path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    data.extend(
                        preprocess_image_bytes(&bytes, size)
                            .with_context(|| format!("{}", path.display()))?,
                    );
                }
                data
            }
        };
        encode_in_batches(&images, [3, size, size], self.batch_size, &device, |x| {
            encoder.forward(x)
        })
    }
}

/// Where the generator's noise comes from.
pub enum NoiseSource {
    /// One z row per image (`--noise Z.npy`).
    File(PathBuf),
    /// `count` images per feature row from a seeded normal, optionally truncated.
    Seeded {
        seed: u64,
        count: usize,
        truncation: Option<f32>,
    },
}

pub struct Generate {
    /// `None`: the embedded default model.
    pub checkpoint: Option<PathBuf>,
    pub features: PathBuf,
    pub noise: NoiseSource,
    pub batch_size: usize,
}

impl OnBackend for Generate {
    /// The raw tanh output, `N x 3 x H x W`.
    type Output = Array;

    fn run<B: Backend>(self, device: B::Device) -> anyhow::Result<Array> {
        let generator: Generator<B> = load_network(self.checkpoint.as_deref(), &device)?;
        let config = generator.config();
        let features = Array::read_rows(&self.features, config.feature_dim, "features")?;
        let (z, feature_rows) = self.noise.draw(&features, config.dim_z())?;
        // Checked before any work: a zero row has no direction to normalise.
        if features
            .data
            .chunks(config.feature_dim)
            .any(|row| row.iter().all(|v| *v == 0.0))
        {
            bail!(
                "{}: a feature row of zeros cannot be normalised",
                self.features.display()
            );
        }
        let total = feature_rows.len();
        let progress = indicatif::ProgressBar::new(total as u64).with_message("generating");
        let resolution = config.resolution();
        let mut data = Vec::with_capacity(total * 3 * resolution * resolution);
        let batch = self.batch_size.max(1);
        for (batch_index, rows) in feature_rows.chunks(batch).enumerate() {
            let start = batch_index * batch;
            let z_rows = &z[start * config.dim_z()..(start + rows.len()) * config.dim_z()];
            data.extend(generate_batch(
                &generator, &features, rows, z_rows, &device,
            )?);
            progress.inc(rows.len() as u64);
        }
        progress.finish_and_clear();
        Ok(Array {
            shape: vec![total, 3, resolution, resolution],
            data,
        })
    }
}

impl NoiseSource {
    /// The noise, one `dim_z` row per image, and which feature row each image is of.
    fn draw(&self, features: &Array, dim_z: usize) -> anyhow::Result<(Vec<f32>, Vec<usize>)> {
        match self {
            NoiseSource::File(path) => {
                let z = Array::read_rows(path, dim_z, "noise")?;
                let rows: Vec<usize> = match (features.rows(), z.rows()) {
                    (m, k) if m == k => (0..k).collect(),
                    (1, k) => vec![0; k],
                    (m, k) => bail!(
                        "{k} noise rows for {m} feature rows: give one feature row, or one per noise row"
                    ),
                };
                Ok((z.data, rows))
            }
            NoiseSource::Seeded {
                seed,
                count,
                truncation,
            } => {
                if *count == 0 {
                    bail!("--count must be at least 1");
                }
                let total = features.rows() * count;
                let rows = (0..features.rows())
                    .flat_map(|r| std::iter::repeat_n(r, *count))
                    .collect();
                Ok((sample_noise(*seed, total, dim_z, *truncation)?, rows))
            }
        }
    }
}

/// The raw output of one forward pass: an image of feature row `rows[i]` from noise row `i` of `z`.
fn generate_batch<B: Backend>(
    generator: &Generator<B>,
    features: &Array,
    rows: &[usize],
    z: &[f32],
    device: &B::Device,
) -> anyhow::Result<Vec<f32>> {
    let (n, width) = (rows.len(), features.row_len());
    let f: Vec<f32> = rows
        .iter()
        .flat_map(|&r| features.data[r * width..(r + 1) * width].iter().copied())
        .collect();
    let images = generator.forward(
        Tensor::from_data(TensorData::new(z.to_vec(), [n, z.len() / n]), device),
        Tensor::from_data(TensorData::new(f, [n, width]), device),
    );
    images
        .into_data()
        .into_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("reading the generator's output: {e:?}"))
}

/// Where the values of an image array lie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelRange {
    /// [-1, 1], as a generator draws.
    Signed,
    /// [0, 1], as the diffusion pipeline's VAE gives them.
    Unit,
}

/// Writes `N x 3 x H x W` images as one `.npy` array (values as they are) where `out` ends in `.npy`, else as
/// PNG files in the folder `out`.
pub fn write_images(images: &Array, range: PixelRange, out: &Path) -> anyhow::Result<()> {
    if out.extension().is_some_and(|e| e == "npy") {
        return images.write(out);
    }
    let written = match range {
        PixelRange::Signed => write_pngs(images, out)?,
        PixelRange::Unit => write_pngs(
            &Array {
                shape: images.shape.clone(),
                data: images.data.iter().map(|v| v * 2.0 - 1.0).collect(),
            },
            out,
        )?,
    };
    eprintln!("wrote {} images to {}", written.len(), out.display());
    Ok(())
}

/// Writes generator output as PNG files `000.png`, `001.png`, ... mapping [-1, 1] to [0, 255].
pub fn write_pngs(images: &Array, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let [_, _, h, w] = images.shape[..] else {
        bail!("expected N x 3 x H x W images")
    };
    let mut written = Vec::new();
    for (i, chunk) in images.data.chunks(3 * h * w).enumerate() {
        let png = encode_png(&to_rgb8(chunk, h, w), w, h).map_err(anyhow::Error::msg)?;
        let path = dir.join(format!("{i:03}.png"));
        std::fs::write(&path, png).with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// `s2v convert`: a PyTorch checkpoint to the project's own format, or a native one to another precision.
pub struct Convert {
    pub input: PathBuf,
    pub output: PathBuf,
    pub network: Option<NetworkKind>,
    pub half: bool,
}

impl OnBackend for Convert {
    type Output = NetworkKind;

    fn run<B: Backend>(self, device: B::Device) -> anyhow::Result<NetworkKind> {
        let bytes = std::fs::read(&self.input)
            .with_context(|| format!("cannot read {}", self.input.display()))?;
        if CheckpointFormat::detect(&bytes[..bytes.len().min(16)])? == CheckpointFormat::Native {
            return self.convert_native::<B>(&bytes, &device);
        }
        let sd = TorchStateDict::read(&self.input)?;
        let kind = match self.network.or_else(|| NetworkKind::detect(&sd)) {
            Some(kind) => kind,
            None => bail!(
                "cannot tell which network {} holds: pass --network",
                self.input.display()
            ),
        };
        match kind {
            NetworkKind::AudioEncoder => self.save_torch::<B, AudioEncoder<B>>(sd, &device),
            NetworkKind::ImageEncoder => self.save_torch::<B, ImageEncoder<B>>(sd, &device),
            NetworkKind::Generator => self.save_torch::<B, Generator<B>>(sd, &device),
        }?;
        Ok(kind)
    }
}

impl Convert {
    /// A native checkpoint to native again: changes its precision (how the trainer's f32 output becomes the
    /// shipped f16 model).
    fn convert_native<B: Backend>(
        self,
        bytes: &[u8],
        device: &B::Device,
    ) -> anyhow::Result<NetworkKind> {
        let header = read_native_header(bytes)?;
        let kind = NetworkKind::from_name(&header.network)
            .with_context(|| format!("{} holds an unknown network", self.input.display()))?;
        if self.network.is_some_and(|asked| asked != kind) {
            bail!(
                "{} holds the {}, not the network asked for",
                self.input.display(),
                header.network
            );
        }
        match kind {
            NetworkKind::AudioEncoder => {
                self.save(&load_native::<B, AudioEncoder<B>>(bytes, device)?)
            }
            NetworkKind::ImageEncoder => {
                self.save(&load_native::<B, ImageEncoder<B>>(bytes, device)?)
            }
            NetworkKind::Generator => self.save(&load_native::<B, Generator<B>>(bytes, device)?),
        }?;
        Ok(kind)
    }

    fn save_torch<B: Backend, N: FromTorch<B>>(
        &self,
        sd: TorchStateDict,
        device: &B::Device,
    ) -> anyhow::Result<()> {
        let network = N::from_torch(sd, device)
            .with_context(|| format!("cannot convert {}", self.input.display()))?;
        self.save(&network)
    }

    fn save<B: Backend, N: NetworkModule<B>>(&self, network: &N) -> anyhow::Result<()> {
        save_native(network, &self.output, self.half)
            .with_context(|| format!("cannot write {}", self.output.display()))
    }
}
