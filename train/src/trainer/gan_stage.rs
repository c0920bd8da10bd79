//! Stage (b): IC-GAN's generator `G(z, f)` and discriminator `D(x, f)` on pictures only. An instance's
//! feature `f` (from the frozen image encoder) conditions both; the real images shown to `D` for it are drawn
//! from the instance's nearest neighbours in feature space, so `G` learns the neighbourhood's distribution; half
//! the time the instance's feature is its mirror image's (IC-GAN's feature augmentation).
//! Hinge loss, spectral norm in `D` and in `G` (IC-GAN's `G_param="SN"`), Adam with beta1 = 0, as BigGAN
//! trains; a moving average of `G`'s weights is what the stage exports (BigGAN's `G_ema`), with spectral norm
//! folded in as for IC-GAN's checkpoints, and DiffAugment guards `D` against memorising a small data set.
//! Optionally an L1 term towards the instance's own picture (`Recipe::gan_reconstruction`).

use anyhow::{Context, Result};
use burn::module::AutodiffModule;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use s2v_models::discriminator::Discriminator;
use s2v_models::loss::{hinge_discriminator, hinge_generator};
use s2v_models::trainable_generator::TrainableGenerator;
use s2v_models::{Generator, ImageEncoder};

use super::data::{PictureBank, par_samples};
use super::diff_augment::DiffAugment;
use super::ema;
use super::{
    Stage, StageLoop, TrainOptions, images_tensor, load_module, load_optimizer, save_module,
    save_optimizer, scalar, seed_stage, selected_rows,
};
use s2v_serving::networks::encode_rows;

pub(super) fn run<B: AutodiffBackend>(
    options: &TrainOptions,
    pictures: &PictureBank,
    image_encoder: &ImageEncoder<B::InnerBackend>,
    device: &B::Device,
) -> Result<Option<Generator<B::InnerBackend>>> {
    let recipe = &options.recipe;
    let mut stage = StageLoop::new(Stage::Generator, options, recipe.gan_steps)?;
    let size = image_encoder.input_size;
    let encode = |input: &dyn Fn(usize) -> Vec<f32>| {
        encode_rows::<B::InnerBackend>(
            pictures.len(),
            [3, size, size],
            32,
            device,
            |i| Ok(input(i)),
            |x| s2v_models::layers::l2_normalise(image_encoder.forward(x)),
        )
    };
    let features = encode(&|i| pictures.encoder_input(i))?;
    let neighbours = nearest_neighbours(&features, recipe.neighbours);
    // IC-GAN's feature augmentation: an instance is as likely to condition `G` and `D` through its mirror
    // image's feature, as real pictures are mirrored. Rows `len..2 len` of the table.
    let instance_features = [features, encode(&|i| pictures.mirror_encoder_input(i))?].concat();

    seed_stage::<B>(device, options.seed, Stage::Generator);
    let mut generator = TrainableGenerator::<B>::init(&recipe.generator, device)?;
    let mut discriminator = Discriminator::<B>::init(&recipe.discriminator, device);
    let adam = AdamConfig::new()
        .with_beta_1(0.0)
        .with_beta_2(0.999)
        .with_epsilon(1e-6);
    let mut g_optimizer = adam.init::<B, TrainableGenerator<B>>();
    let mut d_optimizer = adam.init::<B, Discriminator<B>>();
    let dir = stage.dir();
    let paths = [
        dir.join("generator"),
        dir.join("discriminator"),
        dir.join("generator-optimizer"),
        dir.join("discriminator-optimizer"),
        dir.join("generator-average"),
    ];
    let averaging = recipe.gan_ema_decay > 0.0;
    let mut average = averaging.then(|| generator.valid());
    if stage.resuming() {
        generator = load_module(generator, &paths[0].with_extension("mpk"), device).context(
            "a generator checkpoint from before the generator trained with spectral norm in every layer \
             does not resume: start a new run",
        )?;
        g_optimizer = load_optimizer(g_optimizer, &paths[2].with_extension("mpk"), device)?;
        if !options.fresh_discriminator {
            discriminator = load_module(discriminator, &paths[1].with_extension("mpk"), device)
                .context("to go on with a discriminator of another width, resume with --fresh-discriminator")?;
            d_optimizer = load_optimizer(d_optimizer, &paths[3].with_extension("mpk"), device)?;
        }
        if averaging {
            average = Some(load_module(
                generator.valid(),
                &paths[4].with_extension("mpk"),
                device,
            )?);
        }
    }
    let batch = recipe.gan_batch.max(2);
    let dim_z = recipe.generator.dim_z();
    let resolution = recipe.resolution;
    let augment = |images: Tensor<B, 4>, rng: &mut rand::rngs::StdRng| {
        DiffAugment::draw(recipe.gan_augment, batch, resolution, rng).apply(images)
    };
    let noise = |rng: &mut rand::rngs::StdRng| {
        let values: Vec<f32> = (0..batch * dim_z)
            .map(|_| StandardNormal.sample(rng))
            .collect();
        Tensor::<B, 2>::from_data(TensorData::new(values, [batch, dim_z]), device)
    };
    // Instances, whether each conditions through its mirror image's feature, and the conditioning features.
    let draw_instances = |rng: &mut rand::rngs::StdRng| {
        let instances: Vec<usize> = (0..batch)
            .map(|_| rng.random_range(0..pictures.len()))
            .collect();
        let mirrored: Vec<bool> = instances.iter().map(|_| rng.random_bool(0.5)).collect();
        let rows: Vec<usize> = instances
            .iter()
            .zip(&mirrored)
            .map(|(&i, &m)| i + usize::from(m) * pictures.len())
            .collect();
        let condition = selected_rows::<B>(&instance_features, &rows, device);
        (instances, mirrored, condition)
    };
    while let Some((step, mut rng)) = stage.next_step() {
        // Discriminator updates, each on new instances, real neighbours and detached fakes; the generator
        // update then conditions on the last one's instances. The loss logged is the last update's, as
        // BigGAN logs it.
        let (mut instances, mut mirrored, mut condition) = draw_instances(&mut rng);
        let mut d_value = 0.0;
        for update in 0..recipe.gan_discriminator_steps.max(1) {
            if update > 0 {
                (instances, mirrored, condition) = draw_instances(&mut rng);
            }
            let reals = par_samples(&instances, &mut rng, |i, rng| {
                let options = &neighbours[i];
                pictures.generator_target(options[rng.random_range(0..options.len())], rng)
            });
            let fake = generator
                .forward(noise(&mut rng), condition.clone())
                .detach();
            let real = images_tensor::<B>(reals, resolution, device);
            // One pass over both halves, as IC-GAN's `G_D` concatenates them: each layer's `u` advances
            // once per update and both halves are scored with the same normalised weights.
            let both = Tensor::cat(vec![augment(real, &mut rng), augment(fake, &mut rng)], 0);
            let scores = discriminator.forward(both, condition.clone().repeat_dim(0, 2));
            let d_loss = hinge_discriminator(
                scores.clone().slice(0..batch),
                scores.slice(batch..2 * batch),
            );
            d_value = scalar(&d_loss);
            let grads = GradientsParams::from_grads(d_loss.backward(), &discriminator);
            discriminator = d_optimizer.step(recipe.gan_discriminator_rate, discriminator, grads);
        }

        // Generator step through the updated discriminator, plus the reconstruction term.
        let fake = generator.forward(noise(&mut rng), condition.clone());
        let adversarial =
            hinge_generator(discriminator.forward(augment(fake.clone(), &mut rng), condition));
        let g_value = scalar(&adversarial);
        let (g_loss, l1_value) = if recipe.gan_reconstruction > 0.0 {
            // The picture whose feature conditioned the image: the mirror image where that was used.
            let own = images_tensor::<B>(
                instances
                    .iter()
                    .zip(&mirrored)
                    .map(|(&i, &m)| pictures.generator_pixels(i, m))
                    .collect(),
                resolution,
                device,
            );
            let l1 = (fake - own).abs().mean();
            let l1_value = scalar(&l1);
            (
                adversarial + l1.mul_scalar(recipe.gan_reconstruction),
                l1_value,
            )
        } else {
            (adversarial, 0.0)
        };
        let grads = GradientsParams::from_grads(g_loss.backward(), &generator);
        generator = g_optimizer.step(recipe.gan_generator_rate, generator, grads);
        if let Some(previous) = average.take() {
            // Until `gan_ema_start` the average follows the generator, as BigGAN's `ema_start`.
            let decay = if step < recipe.gan_ema_start {
                0.0
            } else {
                recipe.gan_ema_decay
            };
            average = Some(ema::blend(previous, &generator.valid(), decay)?);
        }

        if stage.record(&[("d-hinge", d_value), ("g-hinge", g_value), ("l1", l1_value)]) {
            save_module(&generator, &paths[0])?;
            save_module(&discriminator, &paths[1])?;
            save_optimizer(&g_optimizer, &paths[2])?;
            save_optimizer(&d_optimizer, &paths[3])?;
            if let Some(average) = &average {
                save_module(average, &paths[4])?;
            }
            stage.commit()?;
        }
    }
    let done = stage.finished();
    stage.finish();
    Ok(done.then(|| average.unwrap_or_else(|| generator.valid()).generator()))
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
