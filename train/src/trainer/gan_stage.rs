//! Stage (b): IC-GAN's generator `G(z, f)` and discriminator `D(x, f)` on pictures only. An instance's
//! feature `f` (from the frozen image encoder) conditions both; the real images shown to `D` for it are drawn
//! from the instance's nearest neighbours in feature space, so `G` learns the neighbourhood's distribution; half
//! the time the instance's feature is its mirror image's (IC-GAN's feature augmentation).
//! Hinge loss, spectral norm in `D` and in `G` (IC-GAN's `G_param="SN"`), Adam with beta1 = 0, as BigGAN
//! trains; a moving average of `G`'s weights is what the stage exports (BigGAN's `G_ema`), with spectral norm
//! folded in as for IC-GAN's checkpoints, and DiffAugment guards `D` against memorising a small data set.
//! Optionally an L1 term towards the instance's own picture (`Recipe::gan_reconstruction`).

use std::path::PathBuf;

use anyhow::{Context, Result};
use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{Adam, AdamConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use rand::Rng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, StandardNormal};
use s2v_models::Generator;
use s2v_models::discriminator::Discriminator;
use s2v_models::loss::{hinge_discriminator, hinge_generator};
use s2v_models::trainable_generator::TrainableGenerator;

use super::data::{PictureBank, par_samples};
use super::diff_augment::DiffAugment;
use super::ema;
use super::{
    Recipe, Stage, StageLoop, TrainOptions, images_tensor, load_module, load_optimiser,
    save_module, save_optimiser, scalar, seed_stage, selected_rows,
};
use crate::eval::normalised;
use crate::image_features::FrozenFeatures;

/// `pictures` are the training pictures at the generator's resolution, read from `files`.
pub(super) fn run<B: AutodiffBackend>(
    options: &TrainOptions,
    pictures: &PictureBank,
    files: &[PathBuf],
    features: &mut FrozenFeatures<B::InnerBackend>,
    device: &B::Device,
) -> Result<Option<Generator<B::InnerBackend>>> {
    let recipe = &options.recipe;
    let mut stage = StageLoop::new(Stage::Generator, options, recipe.gan_steps)?;
    let instances = Instances::new(pictures, files, features, recipe)?;
    seed_stage::<B>(device, options.seed, Stage::Generator);
    let files = GanFiles::in_dir(stage.dir());
    let mut gan = Gan::<B>::init(recipe, device)?;
    if stage.resuming() {
        gan = gan.resume(&files, options.fresh_discriminator, device)?;
    }
    let steps = Steps {
        recipe,
        instances: &instances,
        device,
    };
    while let Some((step, mut rng)) = stage.next_step() {
        let (drawn, d_value, g_value, l1_value);
        (gan, drawn, d_value) = steps.update_discriminator(gan, &mut rng);
        (gan, g_value, l1_value) = steps.update_generator(gan, &drawn, step, &mut rng)?;
        if stage.record(&[("d-hinge", d_value), ("g-hinge", g_value), ("l1", l1_value)]) {
            gan.save(&files)?;
            stage.commit()?;
        }
    }
    let done = stage.finished();
    stage.finish();
    Ok(done.then(|| gan.export()))
}

/// The training pictures as IC-GAN's instances: each one's feature and its mirror image's (rows `len..2 len`
/// of the table: IC-GAN's feature augmentation), and the nearest neighbours whose pictures `D` sees as real.
struct Instances<'a> {
    pictures: &'a PictureBank,
    features: Vec<Vec<f32>>,
    neighbours: Vec<Vec<usize>>,
}

impl<'a> Instances<'a> {
    fn new<B: Backend>(
        pictures: &'a PictureBank,
        files: &[PathBuf],
        frozen: &mut FrozenFeatures<B>,
        recipe: &Recipe,
    ) -> Result<Self> {
        let features = normalised(&frozen.of(files, false)?);
        let neighbours = nearest_neighbours(&features, recipe.neighbours);
        let mirrored = normalised(&frozen.of(files, true)?);
        Ok(Self {
            pictures,
            features: [features, mirrored].concat(),
            neighbours,
        })
    }
}

/// Where the stage keeps its checkpoint ("optimizer" in the names as earlier runs wrote them, so that they
/// resume).
struct GanFiles {
    generator: PathBuf,
    discriminator: PathBuf,
    generator_optimiser: PathBuf,
    discriminator_optimiser: PathBuf,
    average: PathBuf,
}

impl GanFiles {
    fn in_dir(dir: PathBuf) -> Self {
        Self {
            generator: dir.join("generator"),
            discriminator: dir.join("discriminator"),
            generator_optimiser: dir.join("generator-optimizer"),
            discriminator_optimiser: dir.join("discriminator-optimizer"),
            average: dir.join("generator-average"),
        }
    }
}

type AdamFor<M, B> = OptimizerAdaptor<Adam, M, B>;

/// Both networks, their optimisers, and the moving average of the generator's weights that is exported.
struct Gan<B: AutodiffBackend> {
    generator: TrainableGenerator<B>,
    discriminator: Discriminator<B>,
    g_optimiser: AdamFor<TrainableGenerator<B>, B>,
    d_optimiser: AdamFor<Discriminator<B>, B>,
    average: Option<TrainableGenerator<B::InnerBackend>>,
}

impl<B: AutodiffBackend> Gan<B> {
    /// BigGAN's optimiser settings: Adam with beta1 = 0.
    fn init(recipe: &Recipe, device: &B::Device) -> Result<Self> {
        let generator = TrainableGenerator::<B>::init(&recipe.generator, device)?;
        let adam = AdamConfig::new()
            .with_beta_1(0.0)
            .with_beta_2(0.999)
            .with_epsilon(1e-6);
        Ok(Self {
            average: (recipe.gan_ema_decay > 0.0).then(|| generator.valid()),
            generator,
            discriminator: Discriminator::<B>::init(&recipe.discriminator, device),
            g_optimiser: adam.init(),
            d_optimiser: adam.init(),
        })
    }

    fn resume(
        mut self,
        files: &GanFiles,
        fresh_discriminator: bool,
        device: &B::Device,
    ) -> Result<Self> {
        let mpk = |path: &PathBuf| path.with_extension("mpk");
        self.generator = load_module(self.generator, &mpk(&files.generator), device).context(
            "a generator checkpoint from before the generator trained with spectral norm in every layer \
             does not resume: start a new run",
        )?;
        self.g_optimiser =
            load_optimiser(self.g_optimiser, &mpk(&files.generator_optimiser), device)?;
        if !fresh_discriminator {
            self.discriminator = load_module(
                self.discriminator,
                &mpk(&files.discriminator),
                device,
            )
            .context(
                "to go on with a discriminator of another width, resume with --fresh-discriminator",
            )?;
            self.d_optimiser = load_optimiser(
                self.d_optimiser,
                &mpk(&files.discriminator_optimiser),
                device,
            )?;
        }
        if self.average.is_some() {
            self.average = Some(load_module(
                self.generator.valid(),
                &mpk(&files.average),
                device,
            )?);
        }
        Ok(self)
    }

    fn save(&self, files: &GanFiles) -> Result<()> {
        save_module(&self.generator, &files.generator)?;
        save_module(&self.discriminator, &files.discriminator)?;
        save_optimiser(&self.g_optimiser, &files.generator_optimiser)?;
        save_optimiser(&self.d_optimiser, &files.discriminator_optimiser)?;
        if let Some(average) = &self.average {
            save_module(average, &files.average)?;
        }
        Ok(())
    }

    /// The inference generator: the moving average where there is one, spectral norm folded in.
    fn export(self) -> Generator<B::InnerBackend> {
        self.average
            .unwrap_or_else(|| self.generator.valid())
            .generator()
    }
}

/// A batch of instances: which, whether each conditions through its mirror image's feature, and the
/// conditioning features.
struct Drawn<B: Backend> {
    instances: Vec<usize>,
    mirrored: Vec<bool>,
    condition: Tensor<B, 2>,
}

/// What a training step draws and computes with.
struct Steps<'a, B: AutodiffBackend> {
    recipe: &'a Recipe,
    instances: &'a Instances<'a>,
    device: &'a B::Device,
}

impl<B: AutodiffBackend> Steps<'_, B> {
    fn batch(&self) -> usize {
        self.recipe.gan_batch.max(2)
    }

    fn draw_instances(&self, rng: &mut StdRng) -> Drawn<B> {
        let count = self.instances.pictures.len();
        let instances: Vec<usize> = (0..self.batch())
            .map(|_| rng.random_range(0..count))
            .collect();
        let mirrored: Vec<bool> = instances.iter().map(|_| rng.random_bool(0.5)).collect();
        let rows: Vec<usize> = instances
            .iter()
            .zip(&mirrored)
            .map(|(&i, &m)| i + usize::from(m) * count)
            .collect();
        let condition = selected_rows::<B>(&self.instances.features, &rows, self.device);
        Drawn {
            instances,
            mirrored,
            condition,
        }
    }

    fn noise(&self, rng: &mut StdRng) -> Tensor<B, 2> {
        let (batch, dim_z) = (self.batch(), self.recipe.generator.dim_z());
        let values: Vec<f32> = (0..batch * dim_z)
            .map(|_| StandardNormal.sample(rng))
            .collect();
        Tensor::from_data(TensorData::new(values, [batch, dim_z]), self.device)
    }

    fn augment(&self, images: Tensor<B, 4>, rng: &mut StdRng) -> Tensor<B, 4> {
        DiffAugment::draw(
            self.recipe.gan_augment,
            self.batch(),
            self.recipe.resolution,
            rng,
        )
        .apply(images)
    }

    /// The discriminator's updates of one step, each on new instances, real neighbours and detached fakes.
    /// Returns the networks, the last update's instances, on which the generator then trains, and its loss
    /// (the one BigGAN logs).
    fn update_discriminator(&self, mut gan: Gan<B>, rng: &mut StdRng) -> (Gan<B>, Drawn<B>, f64) {
        let (batch, pictures) = (self.batch(), self.instances.pictures);
        let mut drawn = self.draw_instances(rng);
        let mut d_value = 0.0;
        for update in 0..self.recipe.gan_discriminator_steps.max(1) {
            if update > 0 {
                drawn = self.draw_instances(rng);
            }
            let reals = par_samples(&drawn.instances, rng, |i, rng| {
                let options = &self.instances.neighbours[i];
                pictures.generator_target(options[rng.random_range(0..options.len())], rng)
            });
            let fake = gan
                .generator
                .forward(self.noise(rng), drawn.condition.clone())
                .detach();
            let real = images_tensor::<B>(reals, self.recipe.resolution, self.device);
            // One pass over both halves, as IC-GAN's `G_D` concatenates them: each layer's `u` advances once
            // per update and both halves are scored with the same normalised weights.
            let both = Tensor::cat(vec![self.augment(real, rng), self.augment(fake, rng)], 0);
            let scores = gan
                .discriminator
                .forward(both, drawn.condition.clone().repeat_dim(0, 2));
            let d_loss = hinge_discriminator(
                scores.clone().slice(0..batch),
                scores.slice(batch..2 * batch),
            );
            d_value = scalar(&d_loss);
            let grads = GradientsParams::from_grads(d_loss.backward(), &gan.discriminator);
            // The networks move through the optimiser (no clone), so it can update uniquely held weights
            // in place.
            gan.discriminator =
                gan.d_optimiser
                    .step(self.recipe.gan_discriminator_rate, gan.discriminator, grads);
        }
        (gan, drawn, d_value)
    }

    /// The generator's update through the updated discriminator, plus the reconstruction term, and the moving
    /// average. Returns the networks and the hinge and L1 losses.
    fn update_generator(
        &self,
        mut gan: Gan<B>,
        drawn: &Drawn<B>,
        step: usize,
        rng: &mut StdRng,
    ) -> Result<(Gan<B>, f64, f64)> {
        let recipe = self.recipe;
        let fake = gan
            .generator
            .forward(self.noise(rng), drawn.condition.clone());
        let adversarial = hinge_generator(
            gan.discriminator
                .forward(self.augment(fake.clone(), rng), drawn.condition.clone()),
        );
        let g_value = scalar(&adversarial);
        let (g_loss, l1_value) = if recipe.gan_reconstruction > 0.0 {
            let l1 = (fake - self.own_pictures(drawn)).abs().mean();
            let l1_value = scalar(&l1);
            (
                adversarial + l1.mul_scalar(recipe.gan_reconstruction),
                l1_value,
            )
        } else {
            (adversarial, 0.0)
        };
        let grads = GradientsParams::from_grads(g_loss.backward(), &gan.generator);
        gan.generator = gan
            .g_optimiser
            .step(recipe.gan_generator_rate, gan.generator, grads);
        if let Some(previous) = gan.average.take() {
            // Until `gan_ema_start` the average follows the generator, as BigGAN's `ema_start`.
            let decay = if step < recipe.gan_ema_start {
                0.0
            } else {
                recipe.gan_ema_decay
            };
            gan.average = Some(ema::blend(previous, &gan.generator.valid(), decay)?);
        }
        Ok((gan, g_value, l1_value))
    }

    /// The pictures whose features conditioned the images: the mirror image where that was used.
    fn own_pictures(&self, drawn: &Drawn<B>) -> Tensor<B, 4> {
        let pictures = self.instances.pictures;
        images_tensor::<B>(
            drawn
                .instances
                .iter()
                .zip(&drawn.mirrored)
                .map(|(&i, &m)| pictures.generator_pixels(i, m))
                .collect(),
            self.recipe.resolution,
            self.device,
        )
    }
}

/// For each (L2-normalised) feature, the indices of its `k` nearest by cosine similarity, itself included.
pub fn nearest_neighbours(features: &[Vec<f32>], k: usize) -> Vec<Vec<usize>> {
    let k = k.clamp(1, features.len().max(1));
    features
        .iter()
        .map(|f| {
            let mut scored: Vec<(f32, usize)> = features
                .iter()
                .enumerate()
                .map(|(j, g)| (f.iter().zip(g).map(|(a, b)| a * b).sum(), j))
                .collect();
            scored.sort_by(|a, b| b.0.total_cmp(&a.0));
            scored.into_iter().take(k).map(|(_, j)| j).collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbours_are_the_most_similar_and_include_the_instance() {
        let features = vec![
            vec![1.0, 0.0],
            vec![0.9, 0.436],
            vec![0.0, 1.0],
            vec![-1.0, 0.0],
        ];
        let nn = nearest_neighbours(&features, 2);
        assert_eq!(nn[0], vec![0, 1]);
        assert_eq!(nn[2], vec![2, 1]);
        assert_eq!(nn[3][0], 3);
    }
}
