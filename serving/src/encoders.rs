//! The encoder service: a thread that owns the audio and image encoders and turns uploaded files into latents
//! for clients that cannot run the encoders themselves. Bounded like the generator's queue.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use burn::prelude::*;
use s2v_models::preprocess::preprocess_image_bytes;
use s2v_models::{AudioEncoder, ImageEncoder};
use s2v_shared::audio::{FREQ_BINS, TIME_FRAMES, spectrogram_from_bytes};
use tokio::sync::oneshot;

/// What to encode: the bytes of an uploaded file.
pub enum EncodeInput {
    Audio {
        bytes: Vec<u8>,
        extension_hint: Option<String>,
    },
    Image {
        bytes: Vec<u8>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The upload is not a decodable file of its kind (the server answers 415).
    #[error("{0}")]
    Undecodable(String),
    #[error("no {0} is loaded on this server")]
    NotLoaded(&'static str),
    #[error("the encoder queue is full")]
    QueueFull,
    #[error("the encoder has stopped")]
    Stopped,
    #[error("encoding failed: {0}")]
    Internal(String),
}

struct Job {
    input: EncodeInput,
    reply: oneshot::Sender<Result<Vec<f32>, EncodeError>>,
}

#[derive(Clone)]
pub struct EncoderService {
    sender: SyncSender<Job>,
    has_audio: bool,
    has_image: bool,
}

impl EncoderService {
    pub fn start<B: Backend>(
        audio: Option<AudioEncoder<B>>,
        image: Option<ImageEncoder<B>>,
        device: B::Device,
        queue_capacity: usize,
    ) -> Self {
        let (sender, receiver) = sync_channel(queue_capacity.max(1));
        let service = Self {
            sender,
            has_audio: audio.is_some(),
            has_image: image.is_some(),
        };
        std::thread::Builder::new()
            .name("s2v-encoders".into())
            .spawn(move || serve(audio, image, device, receiver))
            .expect("the OS can start a thread");
        service
    }

    /// Encodes a file; the answer is the network's raw output row (2048 values).
    pub async fn encode(&self, input: EncodeInput) -> Result<Vec<f32>, EncodeError> {
        match &input {
            EncodeInput::Audio { .. } if !self.has_audio => {
                return Err(EncodeError::NotLoaded("audio encoder"));
            }
            EncodeInput::Image { .. } if !self.has_image => {
                return Err(EncodeError::NotLoaded("image encoder"));
            }
            _ => {}
        }
        let (reply, answer) = oneshot::channel();
        self.sender
            .try_send(Job { input, reply })
            .map_err(|e| match e {
                TrySendError::Full(_) => EncodeError::QueueFull,
                TrySendError::Disconnected(_) => EncodeError::Stopped,
            })?;
        answer.await.map_err(|_| EncodeError::Stopped)?
    }
}

fn serve<B: Backend>(
    audio: Option<AudioEncoder<B>>,
    image: Option<ImageEncoder<B>>,
    device: B::Device,
    receiver: Receiver<Job>,
) {
    while let Ok(job) = receiver.recv() {
        if job.reply.is_closed() {
            continue; // the client left
        }
        let result = match job.input {
            EncodeInput::Audio {
                bytes,
                extension_hint,
            } => match &audio {
                Some(encoder) => spectrogram_from_bytes(&bytes, extension_hint.as_deref())
                    .map_err(|e| EncodeError::Undecodable(e.to_string()))
                    .and_then(|s| {
                        let x = Tensor::<B, 4>::from_data(
                            TensorData::new(s.data, [1, 1, FREQ_BINS, TIME_FRAMES]),
                            &device,
                        );
                        read_row(encoder.forward(x))
                    }),
                None => Err(EncodeError::NotLoaded("audio encoder")),
            },
            EncodeInput::Image { bytes } => match &image {
                Some(encoder) => preprocess_image_bytes(&bytes, encoder.input_size())
                    .map_err(|e| EncodeError::Undecodable(e.to_string()))
                    .and_then(|pixels| {
                        let size = encoder.input_size();
                        let x = Tensor::<B, 4>::from_data(
                            TensorData::new(pixels, [1, 3, size, size]),
                            &device,
                        );
                        read_row(encoder.forward(x))
                    }),
                None => Err(EncodeError::NotLoaded("image encoder")),
            },
        };
        let _ = job.reply.send(result);
    }
}

fn read_row<B: Backend>(output: Tensor<B, 2>) -> Result<Vec<f32>, EncodeError> {
    output
        .into_data()
        .into_vec::<f32>()
        .map_err(|e| EncodeError::Internal(format!("{e:?}")))
}
