//! Pictures of the evaluation: image grids and a 2-D scatter of features.

use image::{Rgb, RgbImage, imageops};

use s2v_serving::pictures::to_rgb8;

/// One picture (`3 x n x n` in [-1, 1]) or an empty cell.
pub type Cell = Option<Vec<f32>>;

/// Rows of cells to one image, each cell scaled up `zoom` times with a 4-pixel white gutter.
pub fn grid(rows: &[Vec<Cell>], n: usize, zoom: u32) -> RgbImage {
    const GUTTER: u32 = 4;
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0) as u32;
    let side = n as u32 * zoom;
    let mut canvas = RgbImage::from_pixel(
        GUTTER + columns * (side + GUTTER),
        GUTTER + rows.len() as u32 * (side + GUTTER),
        Rgb([255, 255, 255]),
    );
    for (r, row) in rows.iter().enumerate() {
        for (c, cell) in row.iter().enumerate() {
            let Some(chw) = cell else { continue };
            let tile = RgbImage::from_raw(n as u32, n as u32, to_rgb8(chw, n, n))
                .expect("a 3 x n x n picture");
            let tile = imageops::resize(&tile, side, side, imageops::FilterType::Nearest);
            let x = GUTTER + c as u32 * (side + GUTTER);
            let y = GUTTER + r as u32 * (side + GUTTER);
            imageops::overlay(&mut canvas, &tile, i64::from(x), i64::from(y));
        }
    }
    canvas
}

/// The top two principal directions of `points` (rows), by power iteration on the covariance.
pub fn principal_plane(points: &[Vec<f32>]) -> [Vec<f64>; 2] {
    let dim = points.first().map_or(0, Vec::len);
    let n = points.len().max(1) as f64;
    let mean: Vec<f64> = (0..dim)
        .map(|j| points.iter().map(|p| f64::from(p[j])).sum::<f64>() / n)
        .collect();
    let centred: Vec<Vec<f64>> = points
        .iter()
        .map(|p| {
            p.iter()
                .zip(&mean)
                .map(|(v, m)| f64::from(*v) - m)
                .collect()
        })
        .collect();
    let covariance_times = |v: &[f64]| -> Vec<f64> {
        let mut out = vec![0.0; dim];
        for row in &centred {
            let dot: f64 = row.iter().zip(v).map(|(a, b)| a * b).sum();
            for (o, r) in out.iter_mut().zip(row) {
                *o += dot * r;
            }
        }
        out
    };
    let normalise = |v: &mut Vec<f64>| {
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
        v.iter_mut().for_each(|x| *x /= norm);
    };
    let mut first: Vec<f64> = (0..dim).map(|j| 1.0 + j as f64 * 1e-3).collect();
    for _ in 0..200 {
        first = covariance_times(&first);
        normalise(&mut first);
    }
    let mut second: Vec<f64> = (0..dim)
        .map(|j| if j % 2 == 0 { 1.0 } else { -1.0 })
        .collect();
    for _ in 0..200 {
        second = covariance_times(&second);
        let along: f64 = second.iter().zip(&first).map(|(a, b)| a * b).sum();
        second
            .iter_mut()
            .zip(&first)
            .for_each(|(s, f)| *s -= along * f);
        normalise(&mut second);
    }
    [first, second]
}

/// A scatter plot of two groups of points (audio in orange, pictures in blue) projected on their common
/// principal plane, with a grey line joining each pair (`pairs[i]` joins `first[i]` and `second[i]`).
pub fn scatter_pairs(first: &[Vec<f32>], second: &[Vec<f32>], side: u32) -> RgbImage {
    let all: Vec<Vec<f32>> = first.iter().chain(second).cloned().collect();
    let plane = principal_plane(&all);
    let project = |p: &Vec<f32>| -> (f64, f64) {
        let dot = |axis: &Vec<f64>| p.iter().zip(axis).map(|(a, b)| f64::from(*a) * b).sum();
        (dot(&plane[0]), dot(&plane[1]))
    };
    let projected: Vec<(f64, f64)> = all.iter().map(project).collect();
    let (mut lo_x, mut hi_x, mut lo_y, mut hi_y) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in &projected {
        lo_x = lo_x.min(x);
        hi_x = hi_x.max(x);
        lo_y = lo_y.min(y);
        hi_y = hi_y.max(y);
    }
    let margin = 20.0;
    let span = (hi_x - lo_x).max(hi_y - lo_y).max(1e-9);
    let to_pixel = |(x, y): (f64, f64)| -> (i64, i64) {
        let scale = (f64::from(side) - 2.0 * margin) / span;
        (
            (margin + (x - lo_x) * scale) as i64,
            (f64::from(side) - margin - (y - lo_y) * scale) as i64,
        )
    };
    let mut canvas = RgbImage::from_pixel(side, side, Rgb([255, 255, 255]));
    let n = first.len();
    for i in 0..n.min(second.len()) {
        line(
            &mut canvas,
            to_pixel(projected[i]),
            to_pixel(projected[n + i]),
            Rgb([200, 200, 200]),
        );
    }
    for (i, &p) in projected.iter().enumerate() {
        let colour = if i < n {
            Rgb([230, 120, 20])
        } else {
            Rgb([30, 90, 200])
        };
        dot(&mut canvas, to_pixel(p), 3, colour);
    }
    canvas
}

fn put(canvas: &mut RgbImage, x: i64, y: i64, colour: Rgb<u8>) {
    if x >= 0 && y >= 0 && (x as u32) < canvas.width() && (y as u32) < canvas.height() {
        canvas.put_pixel(x as u32, y as u32, colour);
    }
}

fn dot(canvas: &mut RgbImage, (cx, cy): (i64, i64), radius: i64, colour: Rgb<u8>) {
    for dy in -radius..=radius {
        for dx in -radius..=radius {
            if dx * dx + dy * dy <= radius * radius {
                put(canvas, cx + dx, cy + dy, colour);
            }
        }
    }
}

fn line(canvas: &mut RgbImage, (x0, y0): (i64, i64), (x1, y1): (i64, i64), colour: Rgb<u8>) {
    let steps = (x1 - x0).abs().max((y1 - y0).abs()).max(1);
    for s in 0..=steps {
        let t = s as f64 / steps as f64;
        put(
            canvas,
            (x0 as f64 + t * (x1 - x0) as f64).round() as i64,
            (y0 as f64 + t * (y1 - y0) as f64).round() as i64,
            colour,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_principal_plane_finds_the_spread_directions() {
        // Points spread along x (wide) and y (narrow), none along z.
        let points: Vec<Vec<f32>> = (0..20)
            .map(|i| {
                let t = i as f32 - 10.0;
                vec![t * 3.0, (t * 1.7).sin(), 0.0]
            })
            .collect();
        let [first, second] = principal_plane(&points);
        assert!(first[0].abs() > 0.99, "{first:?}");
        assert!(second[1].abs() > 0.9, "{second:?}");
        assert!(first[2].abs() < 1e-6 && second[2].abs() < 1e-6);
    }

    #[test]
    fn grids_place_cells_and_leave_gaps_white() {
        let black = vec![-1.0; 3 * 4];
        let g = grid(&[vec![Some(black), None]], 2, 2);
        assert_eq!(g.dimensions(), (4 + 2 * 8, 4 + 8));
        assert_eq!(g.get_pixel(5, 5), &Rgb([0, 0, 0]));
        assert_eq!(g.get_pixel(14, 5), &Rgb([255, 255, 255]));
    }
}
