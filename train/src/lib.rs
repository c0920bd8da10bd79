//! Training the embedded default model from Debian's packages: the data set builder (`dataset`), the
//! three-stage trainer (`trainer`: the image encoder with SimCLR, IC-GAN's generator, the audio encoder with the
//! paper's loss) and the evaluation that judges a model on held-out sounds (`eval`).

pub mod dataset;
pub mod eval;
pub mod image_features;
pub mod trainer;
