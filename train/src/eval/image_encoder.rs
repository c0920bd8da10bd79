//! The image encoder's neighbour measure on its own, from the data set's pictures: the trainer reports it as
//! soon as the image stage ends (so a run says at once whether its encoder groups pictures by what they
//! show), and `s2v eval` reports it with the rest.

use std::path::PathBuf;

use anyhow::{Result, ensure};
use burn::prelude::*;

use super::labelling::Labelling;
use super::neighbours::{ClassifiedPictures, PictureNeighbours, picture_neighbours};
use super::normalised;
use crate::dataset::build::group_of;
use crate::dataset::{Dataset, Item};
use crate::image_features::FrozenFeatures;
use crate::trainer::data::PictureBank;

/// The neighbour measures of `features`' encoder over the training and held-out pictures that have a class,
/// beside their raw pixels read at `pixel_size`.
pub fn image_encoder_neighbours<B: Backend>(
    dataset: &Dataset,
    labelling: Labelling,
    features: &mut FrozenFeatures<B>,
    pixel_size: usize,
) -> Result<PictureNeighbours> {
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
    let library = Encoded::of(&training, pixel_size, features)?;
    let queries = Encoded::of(&held_out, pixel_size, features)?;
    Ok(picture_neighbours(
        &library.classified(&training),
        &queries.classified(&held_out),
        pixel_size,
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
        pixel_size: usize,
        features: &mut FrozenFeatures<B>,
    ) -> Result<Self> {
        let files: Vec<PathBuf> = pictures
            .iter()
            .map(|(path, _, _)| (*path).clone())
            .collect();
        Ok(Self {
            bank: PictureBank::load(files.iter().map(PathBuf::as_path), pixel_size)?,
            features: normalised(&features.of(&files, false)?),
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
