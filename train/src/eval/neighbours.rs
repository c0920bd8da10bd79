//! Judge-free measures of the encoders' feature spaces, by the data set's own labels: the share of queries
//! whose nearest neighbour (largest cosine) has the query's category.
//!
//! IC-GAN shows the discriminator, for an instance, real pictures drawn from its nearest neighbours in `f_V`'s
//! space, so what the generator can learn to draw for a feature is bounded by how alike those neighbours are;
//! and a sound's feature can only point at the right pictures where `f_A` puts it near them. These numbers need
//! no classifier, so they stay comparable across code changes, and they come with the bar an encoder must
//! clear: the same neighbours found on raw pixels.

use serde::Serialize;

/// Shares of nearest neighbours of the query's class (fine label, or category) (each in [0, 1]).
#[derive(Debug, Clone, Serialize)]
pub struct Neighbours {
    #[serde(flatten)]
    pub pictures: PictureNeighbours,
    /// Each held-out sound's nearest training sound, by `f_A`.
    pub held_out_sounds: f64,
    /// Each held-out sound's nearest training picture, `f_A` against `f_V`: what the retrieval baseline
    /// retrieves, judged by the labels instead of the classifier.
    pub held_out_sounds_to_pictures: f64,
    /// Held-out sounds with a class.
    pub held_out_count: usize,
    /// The two sound shares sound by sound, so that two models can be compared on the same sounds.
    pub sounds: Vec<SoundNeighbours>,
}

/// One held-out sound's class and the classes of its nearest neighbours.
#[derive(Debug, Clone, Serialize)]
pub struct SoundNeighbours {
    pub name: String,
    pub class: String,
    /// Its nearest training sound's, by `f_A`.
    pub nearest_sound: Option<String>,
    /// Its nearest labelled training picture's, `f_A` against `f_V`.
    pub nearest_picture: Option<String>,
}

impl SoundNeighbours {
    /// The share of `sounds` whose neighbour, as `neighbour` picks it, has their class.
    pub fn share(sounds: &[Self], neighbour: impl Fn(&Self) -> Option<&String>) -> f64 {
        let hits = sounds
            .iter()
            .filter(|s| neighbour(s) == Some(&s.class))
            .count();
        hits as f64 / sounds.len().max(1) as f64
    }
}

/// The image encoder's part: how often a picture's nearest picture shows the same class.
#[derive(Debug, Clone, Serialize)]
pub struct PictureNeighbours {
    /// Each training picture's nearest training picture outside its own group of variants (`pig`,
    /// `pig_golden`), by `f_V`.
    pub training_pictures: f64,
    /// The same on 16 x 16 raw pixels (mean-centred): what `f_V` must beat to have learned more than colour
    /// and layout.
    pub training_pictures_by_pixels: f64,
    /// Each held-out picture's nearest training picture, by `f_V`.
    pub held_out_pictures: f64,
    /// The same on 16 x 16 raw pixels.
    pub held_out_pictures_by_pixels: f64,
    /// Training pictures with a class (the keys).
    pub training_picture_count: usize,
    /// Held-out pictures with a class (the queries).
    pub held_out_picture_count: usize,
}

/// Pictures with a class: their pixels (channel-major, [0, 1]), L2-normalised `f_V` features, classes and
/// groups of variants.
pub struct ClassifiedPictures<'a> {
    pub pixels: &'a [Vec<f32>],
    pub features: &'a [Vec<f32>],
    pub classes: Vec<&'a str>,
    pub groups: Vec<String>,
}

/// Side of the raw-pixel features the encoder is compared against.
const PIXEL_SIDE: usize = 16;

/// The neighbour measures of `f_V` on `library` (training pictures) and `held_out`, beside raw pixels, for
/// pictures of `size` px.
pub fn picture_neighbours(
    library: &ClassifiedPictures,
    held_out: &ClassifiedPictures,
    size: usize,
) -> PictureNeighbours {
    // Pixel features of both sets, centred over both together.
    let all_pixels = pixel_features(
        &[library.pixels, held_out.pixels].concat(),
        size,
        PIXEL_SIDE,
    );
    let (library_pixels, held_out_pixels) = all_pixels.split_at(library.pixels.len());
    let other_group = |q: usize, k: usize| library.groups[q] != library.groups[k];
    let (keys, queries) = (&library.classes, &held_out.classes);
    PictureNeighbours {
        training_pictures: same_label_share(
            library.features,
            keys,
            library.features,
            keys,
            other_group,
        ),
        training_pictures_by_pixels: same_label_share(
            library_pixels,
            keys,
            library_pixels,
            keys,
            other_group,
        ),
        held_out_pictures: same_label_share(
            held_out.features,
            queries,
            library.features,
            keys,
            |_, _| true,
        ),
        held_out_pictures_by_pixels: same_label_share(
            held_out_pixels,
            queries,
            library_pixels,
            keys,
            |_, _| true,
        ),
        training_picture_count: library.pixels.len(),
        held_out_picture_count: held_out.pixels.len(),
    }
}

/// The index of the row of `keys` with the largest dot product with `query`, among those `allowed` admits.
pub fn nearest(query: &[f32], keys: &[Vec<f32>], allowed: impl Fn(usize) -> bool) -> Option<usize> {
    (0..keys.len())
        .filter(|&k| allowed(k))
        .map(|k| (k, super::dot(query, &keys[k])))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(k, _)| k)
}

/// The label of each query's nearest key (rows L2-normalised); none where there are no keys.
pub fn nearest_labels<L: Clone>(
    queries: &[Vec<f32>],
    keys: &[Vec<f32>],
    labels: &[L],
) -> Vec<Option<L>> {
    queries
        .iter()
        .map(|query| nearest(query, keys, |_| true).map(|k| labels[k].clone()))
        .collect()
}

/// The share of `queries` whose nearest key (of those `allowed` admits for that query) has the query's label.
/// Rows must be L2-normalised for the dot product to be the cosine. A query with no admissible key counts
/// as a miss.
pub fn same_label_share<L: PartialEq>(
    queries: &[Vec<f32>],
    query_labels: &[L],
    keys: &[Vec<f32>],
    key_labels: &[L],
    allowed: impl Fn(usize, usize) -> bool,
) -> f64 {
    let hits = queries
        .iter()
        .enumerate()
        .filter(|(q, query)| {
            nearest(query, keys, |k| allowed(*q, k))
                .is_some_and(|k| key_labels[k] == query_labels[*q])
        })
        .count();
    hits as f64 / queries.len().max(1) as f64
}

/// Channel-major `size` x `size` pictures (values in [0, 1]) averaged down to `side` x `side`, mean-centred
/// over the set and L2-normalised: the raw-pixel features the encoders are compared against.
pub fn pixel_features(pictures: &[Vec<f32>], size: usize, side: usize) -> Vec<Vec<f32>> {
    let cell = (size / side).max(1);
    let side = size / cell;
    let plane = size * size;
    let pooled: Vec<Vec<f32>> = pictures
        .iter()
        .map(|p| {
            let mut out = Vec::with_capacity(3 * side * side);
            for c in 0..3 {
                for by in 0..side {
                    for bx in 0..side {
                        let mut sum = 0.0;
                        for y in by * cell..(by + 1) * cell {
                            for x in bx * cell..(bx + 1) * cell {
                                sum += p[c * plane + y * size + x];
                            }
                        }
                        out.push(sum / (cell * cell) as f32);
                    }
                }
            }
            out
        })
        .collect();
    let dim = pooled.first().map_or(0, Vec::len);
    let mut mean = vec![0.0f32; dim];
    for row in &pooled {
        for (m, v) in mean.iter_mut().zip(row) {
            *m += v / pooled.len() as f32;
        }
    }
    pooled
        .into_iter()
        .map(|row| {
            let centred: Vec<f32> = row.iter().zip(&mean).map(|(v, m)| v - m).collect();
            let norm = centred.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            centred.into_iter().map(|v| v / norm).collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: &[f32]) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect()
    }

    #[test]
    fn features_clustered_by_label_find_their_label_and_mixed_ones_do_not() {
        // Two labels along two axes, with a little spread.
        let keys: Vec<Vec<f32>> = (0..6)
            .map(|i| {
                let t = 0.1 * i as f32;
                if i % 2 == 0 {
                    unit(&[1.0, t])
                } else {
                    unit(&[t, 1.0])
                }
            })
            .collect();
        let labels: Vec<usize> = (0..6).map(|i| i % 2).collect();
        let queries = vec![unit(&[1.0, 0.05]), unit(&[0.05, 1.0])];
        assert_eq!(
            same_label_share(&queries, &[0, 1], &keys, &labels, |_, _| true),
            1.0
        );
        // The same queries asked with swapped labels miss every time.
        assert_eq!(
            same_label_share(&queries, &[1, 0], &keys, &labels, |_, _| true),
            0.0
        );
    }

    #[test]
    fn an_excluded_key_is_skipped_even_when_it_is_nearest() {
        let keys = vec![unit(&[1.0, 0.0]), unit(&[0.8, 0.6]), unit(&[0.0, 1.0])];
        let labels = ["a", "a", "b"];
        // Leave-one-out: the query is key 0 itself; excluding it, key 1 (same label) is nearest.
        let loo = same_label_share(&keys[..1], &["a"], &keys, &labels, |q, k| q != k);
        assert_eq!(loo, 1.0);
        // Excluding keys 0 and 1 leaves only the other label.
        let share = same_label_share(&keys[..1], &["a"], &keys, &labels, |_, k| k == 2);
        assert_eq!(share, 0.0);
        // No admissible key is a miss, not a panic.
        assert_eq!(
            same_label_share(&keys[..1], &["a"], &keys, &labels, |_, _| false),
            0.0
        );
        assert_eq!(nearest(&keys[0], &keys, |_| false), None);
    }

    #[test]
    fn pixel_features_average_blocks_and_are_centred_unit_rows() {
        // Two 4 x 4 pictures, one dark, one light in its left half.
        let size = 4;
        let dark = vec![0.0f32; 3 * size * size];
        let mut left_light = vec![0.0f32; 3 * size * size];
        for c in 0..3 {
            for y in 0..size {
                for x in 0..2 {
                    left_light[c * 16 + y * size + x] = 1.0;
                }
            }
        }
        let features = pixel_features(&[dark, left_light], size, 2);
        assert_eq!(features[0].len(), 3 * 2 * 2);
        for row in &features {
            let norm: f32 = row.iter().map(|v| v * v).sum();
            assert!((norm - 1.0).abs() < 1e-5);
        }
        // Centred over the two, the rows are opposite, and only the left blocks differ.
        let dot: f32 = features[0]
            .iter()
            .zip(&features[1])
            .map(|(a, b)| a * b)
            .sum();
        assert!((dot + 1.0).abs() < 1e-5, "{dot}");
        assert!(features[1][0] > 0.0 && features[1][1] == 0.0);
    }
}
