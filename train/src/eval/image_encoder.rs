//! The image encoder's neighbour measure on its own, from the data set's pictures: the trainer reports it as
//! soon as the image stage ends (so a run says at once whether its encoder groups pictures by what they
//! show), and `s2v eval` reports it with the rest.

use std::path::PathBuf;

use anyhow::{Result, ensure};
use burn::prelude::*;
use s2v_models::ImageEncoder;
use s2v_serving::networks::encode_rows;

use super::labelling::Labelling;
use super::neighbours::{ClassifiedPictures, PictureNeighbours, picture_neighbours};
use super::normalised;
use crate::dataset::build::group_of;
use crate::dataset::{Dataset, Item};
use crate::trainer::data::PictureBank;

/// The neighbour measures of `encoder` over the training and held-out pictures that have a class.
pub fn image_encoder_neighbours<B: Backend>(
    dataset: &Dataset,
    labelling: Labelling,
    encoder: &ImageEncoder<B>,
    device: &B::Device,
) -> Result<PictureNeighbours> {
    let size = encoder.input_size();
    let (training, held_out) = (dataset.training_images(), dataset.held_out_images());
    let (training, held_out) = (
        labelling.classified(&training),
        labelling.classified(&held_out),
    );
    ensure!(
        !training.is_empty() && !held_out.is_empty(),
        "the data set has {} training and {} held-out pictures with {}: nothing to measure",
        training.len(),
        held_out.len(),
        labelling.name()
    );
    let library = Encoded::of(&training, size, encoder, device)?;
    let queries = Encoded::of(&held_out, size, encoder, device)?;
    Ok(picture_neighbours(
        &library.classified(&training),
        &queries.classified(&held_out),
        size,
    ))
}

/// Pictures read and encoded.
struct Encoded {
    bank: PictureBank,
    features: Vec<Vec<f32>>,
}

impl Encoded {
    fn of<B: Backend>(
        pictures: &[(&PathBuf, &Item, &str)],
        size: usize,
        encoder: &ImageEncoder<B>,
        device: &B::Device,
    ) -> Result<Self> {
        let bank = PictureBank::load(pictures.iter().map(|(path, _, _)| path.as_path()), size)?;
        let features = encode_rows(
            bank.len(),
            [3, size, size],
            32,
            device,
            |i| Ok(bank.encoder_input(i)),
            |x| encoder.forward(x),
        )?;
        Ok(Self {
            features: normalised(&features),
            bank,
        })
    }

    fn classified<'a>(&'a self, pictures: &[(&PathBuf, &Item, &'a str)]) -> ClassifiedPictures<'a> {
        ClassifiedPictures {
            pixels: &self.bank.pixels,
            features: &self.features,
            classes: pictures.iter().map(|(_, _, class)| *class).collect(),
            groups: pictures.iter().map(|(_, item, _)| group_of(item)).collect(),
        }
    }
}
