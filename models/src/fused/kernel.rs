//! The fused CPU kernels on plain `f32` slices in NCHW order: a convolution whose batch norm, residual and
//! activation run on each output tile while it is still in cache, batch norm - ReLU - nearest upsampling in
//! one pass, and max pooling.
//!
//! The convolution lowers tiles of output positions to a column matrix (im2col, rows ordered like PyTorch's
//! weight `[c_out, c_in, kh, kw]`, so the weight is used as stored) and multiplies with `gemm`, which picks
//! AVX-512, AVX2 or wasm SIMD at run time. Each thread takes an equal share of the output positions and runs
//! its tiles one after the other (see [`Schedule`] and [`super::threads`]); a layer with too few positions
//! for that (ResNet's last stage, the generator's first blocks) instead runs one tile at a time with `gemm`'s
//! own threads.

use std::cell::Cell;

use super::Activation;
use super::threads::{for_each_plane, gemm_on_all_threads, parallel_parts, threads};

/// A 2-D convolution's sizes (groups 1, dilation 1, symmetric zero padding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvShape {
    pub batch: usize,
    pub c_in: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub c_out: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
}

impl ConvShape {
    /// Output height and width; `None` where the kernel does not fit the padded input.
    pub fn output_size(&self) -> Option<[usize; 2]> {
        Some([
            window_count(self.in_h, self.kernel[0], self.stride[0], self.padding[0])?,
            window_count(self.in_w, self.kernel[1], self.stride[1], self.padding[1])?,
        ])
    }

    /// The slice lengths [`conv2d`] needs for an output of `[out_h, out_w]`: input, weight, output.
    pub fn lengths(&self, [out_h, out_w]: [usize; 2]) -> (usize, usize, usize) {
        (
            self.batch * self.c_in * self.in_h * self.in_w,
            self.c_out * self.col_len(),
            self.batch * self.c_out * out_h * out_w,
        )
    }

    /// Rows of the column matrix: one per weight of an output channel.
    fn col_len(&self) -> usize {
        self.c_in * self.kernel[0] * self.kernel[1]
    }
}

/// How many windows of `kernel` fit along `input` padded by `padding` on both sides, at `stride`; `None` where
/// none does (or `kernel` or `stride` is 0). Convolutions and pooling share it.
pub fn window_count(input: usize, kernel: usize, stride: usize, padding: usize) -> Option<usize> {
    let padded = input + 2 * padding;
    (stride > 0 && kernel > 0 && padded >= kernel).then(|| (padded - kernel) / stride + 1)
}

/// What runs on each output value after the convolution's sum, in this order.
#[derive(Debug, Clone, Copy, Default)]
pub struct Epilogue<'a> {
    /// `[batch, c_out]` multipliers (none: 1).
    pub scale: Option<&'a [f32]>,
    /// `[batch, c_out]` added after scaling: the bias, folded with a batch norm's shift (none: 0).
    pub shift: Option<&'a [f32]>,
    pub residual: Option<Residual<'a>>,
    pub activation: Activation,
}

/// A tensor added to the output: `[batch, c_out, out_h, out_w]`, or half that height and width repeated 2 x 2
/// (a shortcut computed before nearest upsampling, which commutes with a 1 x 1 convolution).
#[derive(Debug, Clone, Copy)]
pub struct Residual<'a> {
    pub values: &'a [f32],
    pub upsampled: bool,
}

/// `max(v, 0)` that keeps NaN, as burn's and PyTorch's ReLU do.
#[inline(always)]
fn relu(v: f32) -> f32 {
    if v <= 0.0 { 0.0 } else { v }
}

/// A run of output positions on one output row: sample `b`, row `oy`, columns `ox..ox + len`, at `offset` in
/// the tile.
#[derive(Debug, Clone, Copy)]
struct RowRun {
    b: usize,
    oy: usize,
    ox: usize,
    len: usize,
    offset: usize,
}

/// The row runs covering output positions `start..end`, numbered across the batch (`b * H * W + y * W + x`).
fn row_runs(start: usize, end: usize, [out_h, out_w]: [usize; 2]) -> impl Iterator<Item = RowRun> {
    let plane = out_h * out_w;
    let mut position = start;
    std::iter::from_fn(move || {
        (position < end).then(|| {
            let (b, within) = (position / plane, position % plane);
            let (oy, ox) = (within / out_w, within % out_w);
            let len = (out_w - ox).min(end - position);
            let run = RowRun {
                b,
                oy,
                ox,
                len,
                offset: position - start,
            };
            position += len;
            run
        })
    })
}

/// Output positions per tile at most: the column tile stays within a core's L2 cache (512 KiB), but tiles
/// are not so narrow that `gemm`'s fixed costs dominate.
fn tile_width(shape: &ConvShape) -> usize {
    const COLUMN_BUDGET: usize = 1 << 17;
    (COLUMN_BUDGET / shape.col_len().max(1))
        .clamp(64, 2048)
        .next_multiple_of(ALIGNMENT)
}

/// Where parts and tiles start: a multiple of `gemm`'s 16 lanes, so that it multiplies a column tile where it
/// lies instead of copying it into its own layout first.
const ALIGNMENT: usize = 16;

/// Fewest output positions a thread is given its own part for: below that, one part runs with `gemm`'s own
/// threads, which share the weight between them instead of each thread reading all of it.
const MIN_PART: usize = 64;

/// How a convolution's output positions are shared out. Each thread takes one contiguous part of near-equal
/// length, cut into near-equal tiles run one after the other: tiles of the budget's width handed out one at a
/// time left one thread with a whole tile more than the other on most of ResNet's layers. With too few
/// positions for that, there is one part and `gemm` threads each tile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Schedule {
    positions: usize,
    parts: usize,
    max_width: usize,
}

impl Schedule {
    fn new(positions: usize, max_width: usize, threads: usize) -> Self {
        let parts = if threads > 1 && positions >= threads * MIN_PART {
            threads
        } else {
            1
        };
        Self {
            positions,
            parts,
            max_width,
        }
    }

    /// Whether each tile's `gemm` should use the threads itself.
    fn threads_inside_gemm(&self) -> bool {
        self.parts == 1
    }

    /// Part `part`'s output positions.
    fn part(&self, part: usize) -> (usize, usize) {
        let boundary = |p: usize| {
            if p == self.parts {
                self.positions
            } else {
                let exact = self.positions * p / self.parts;
                (exact + ALIGNMENT / 2) / ALIGNMENT * ALIGNMENT
            }
        };
        (boundary(part), boundary(part + 1))
    }

    /// The tiles of part `part`, in order.
    fn tiles(&self, part: usize) -> impl Iterator<Item = (usize, usize)> {
        let (start, end) = self.part(part);
        let len = end - start;
        let count = len.div_ceil(self.max_width).max(1);
        let width = len.div_ceil(count).next_multiple_of(ALIGNMENT);
        (start..end)
            .step_by(width.max(1))
            .map(move |tile| (tile, (tile + width).min(end)))
    }
}

/// Where a 1 x 1 convolution with stride 1 and no padding can read its column tile straight from the input
/// (`[c_in, H * W]` per sample, row stride `H * W`): the tile's offset in `x`, when it lies within one sample.
fn columns_in_place(shape: &ConvShape, (start, end): (usize, usize)) -> Option<usize> {
    let pointwise = shape.kernel == [1, 1] && shape.stride == [1, 1] && shape.padding == [0, 0];
    let plane = shape.in_h * shape.in_w;
    (pointwise && start / plane == (end - 1) / plane)
        .then(|| (start / plane) * shape.c_in * plane + start % plane)
}

/// Fills `col` (`[col_len, width]`, row stride `width`) with the input patches of output positions
/// `start..end`; zero where the kernel overlaps the padding.
fn im2col(
    x: &[f32],
    shape: &ConvShape,
    out: [usize; 2],
    start: usize,
    end: usize,
    col: &mut [f32],
) {
    let width = end - start;
    let [kh, kw] = shape.kernel;
    let [sh, sw] = shape.stride;
    let [ph, pw] = shape.padding;
    let plane = shape.in_h * shape.in_w;
    for run in row_runs(start, end, out) {
        for ci in 0..shape.c_in {
            let channel = &x[(run.b * shape.c_in + ci) * plane..][..plane];
            for ky in 0..kh {
                let iy = (run.oy * sh + ky) as isize - ph as isize;
                for kx in 0..kw {
                    let row = (ci * kh + ky) * kw + kx;
                    let dst = &mut col[row * width + run.offset..][..run.len];
                    if iy < 0 || iy >= shape.in_h as isize {
                        dst.fill(0.0);
                        continue;
                    }
                    let src = &channel[iy as usize * shape.in_w..][..shape.in_w];
                    gather_row(src, dst, run.ox * sw + kx, pw, sw);
                }
            }
        }
    }
}

/// `dst[i] = src[first + i * stride - pad]`, zero outside `src`.
fn gather_row(src: &[f32], dst: &mut [f32], first: usize, pad: usize, stride: usize) {
    let len = dst.len();
    // Outputs before `lo` and from `hi` on read the padding.
    let lo = pad.saturating_sub(first).div_ceil(stride).min(len);
    let hi = (src.len() + pad)
        .saturating_sub(first)
        .div_ceil(stride)
        .clamp(lo, len);
    dst[..lo].fill(0.0);
    dst[hi..].fill(0.0);
    if lo == hi {
        return;
    }
    let begin = first + lo * stride - pad;
    if stride == 1 {
        dst[lo..hi].copy_from_slice(&src[begin..begin + (hi - lo)]);
    } else {
        let src = &src[begin..=begin + (hi - lo - 1) * stride];
        for (i, d) in dst[lo..hi].iter_mut().enumerate() {
            *d = src[i * stride];
        }
    }
}

/// Writes the tile's sums `acc` (`[c_out, width]`) to `out` through the epilogue.
///
/// # Safety
/// No other thread writes the positions `start..end` of any channel of `out`.
unsafe fn write_tile(acc: &[f32], (start, end): (usize, usize), epilogue: &Epilogue, out: OutPtr) {
    // The activation is chosen once per tile, so that each loop below is compiled for one and vectorises.
    // SAFETY: passed on from the caller.
    unsafe {
        match epilogue.activation {
            Activation::Identity => write_tile_with(acc, (start, end), epilogue, out, |v| v),
            Activation::Relu => write_tile_with(acc, (start, end), epilogue, out, relu),
            Activation::Tanh => write_tile_with(acc, (start, end), epilogue, out, f32::tanh),
        }
    }
}

/// [`write_tile`] with the activation `activation`.
///
/// # Safety
/// As [`write_tile`].
unsafe fn write_tile_with(
    acc: &[f32],
    range: (usize, usize),
    epilogue: &Epilogue,
    out: OutPtr,
    activation: impl Fn(f32) -> f32 + Copy,
) {
    // SAFETY: passed on from the caller.
    unsafe {
        match epilogue.residual {
            Some(Residual {
                values,
                upsampled: true,
            }) => write_rows_upsampled(acc, range, epilogue, values, out, activation),
            _ => write_planes(acc, range, epilogue, out, activation),
        }
    }
}

/// [`write_tile_with`] where any residual has the output's shape. A tile's positions within one sample are
/// contiguous in each output channel's plane, so each channel is written in one loop over them, not row by
/// row: the rows of late layers are a few values long.
///
/// # Safety
/// As [`write_tile`].
unsafe fn write_planes(
    acc: &[f32],
    (start, end): (usize, usize),
    epilogue: &Epilogue,
    out: OutPtr,
    activation: impl Fn(f32) -> f32 + Copy,
) {
    let width = end - start;
    let plane = out.size[0] * out.size[1];
    let mut position = start;
    while position < end {
        let (b, within) = (position / plane, position % plane);
        let len = (plane - within).min(end - position);
        let offset = position - start;
        for co in 0..out.channels {
            let nc = b * out.channels + co;
            let at = nc * plane + within;
            let sums = &acc[co * width + offset..][..len];
            // SAFETY: in bounds of the output (checked), and these positions belong to this tile only.
            let dst = unsafe { out.row(at, len) };
            let scale = epilogue.scale.map_or(1.0, |s| s[nc]);
            let shift = epilogue.shift.map_or(0.0, |s| s[nc]);
            match epilogue.residual {
                Some(residual) => {
                    let r = &residual.values[at..][..len];
                    for ((d, &v), &r) in dst.iter_mut().zip(sums).zip(r) {
                        *d = activation(v * scale + shift + r);
                    }
                }
                None => {
                    for (d, &v) in dst.iter_mut().zip(sums) {
                        *d = activation(v * scale + shift);
                    }
                }
            }
        }
        position += len;
    }
}

/// [`write_tile_with`] with a residual of half the output's height and width, repeated 2 x 2.
///
/// # Safety
/// As [`write_tile`].
unsafe fn write_rows_upsampled(
    acc: &[f32],
    (start, end): (usize, usize),
    epilogue: &Epilogue,
    residual: &[f32],
    out: OutPtr,
    activation: impl Fn(f32) -> f32 + Copy,
) {
    let width = end - start;
    let [out_h, out_w] = out.size;
    let plane = out_h * out_w;
    let half_w = out_w / 2;
    for run in row_runs(start, end, out.size) {
        for co in 0..out.channels {
            let nc = run.b * out.channels + co;
            let sums = &acc[co * width + run.offset..][..run.len];
            // SAFETY: in bounds of the output (checked), and this run belongs to this tile only.
            let dst = unsafe { out.row(nc * plane + run.oy * out_w + run.ox, run.len) };
            let scale = epilogue.scale.map_or(1.0, |s| s[nc]);
            let shift = epilogue.shift.map_or(0.0, |s| s[nc]);
            let row = &residual[(nc * (out_h / 2) + run.oy / 2) * half_w..][..half_w];
            for (i, (d, &v)) in dst.iter_mut().zip(sums).enumerate() {
                *d = activation(v * scale + shift + row[(run.ox + i) / 2]);
            }
        }
    }
}

/// The output buffer shared by the tiles, which write disjoint positions.
#[derive(Clone, Copy)]
struct OutPtr {
    ptr: *mut f32,
    len: usize,
    /// Output channels, height and width.
    channels: usize,
    size: [usize; 2],
}

// SAFETY: tiles write disjoint positions (see `write_tile`), and the buffer outlives the parallel loop.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// # Safety
    /// No other live reference covers `start..start + len`.
    unsafe fn row<'a>(self, start: usize, len: usize) -> &'a mut [f32] {
        assert!(start + len <= self.len, "output row out of bounds");
        // SAFETY: in bounds (checked), exclusive (the caller's promise).
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), len) }
    }
}

thread_local! {
    /// Each thread's column tile and tile sums, kept between calls.
    static SCRATCH: Cell<(Vec<f32>, Vec<f32>)> = const { Cell::new((Vec::new(), Vec::new())) };
}

/// The convolution of `x` (`[batch, c_in, in_h, in_w]`) with `weight` (`[c_out, c_in, kh, kw]`), through the
/// epilogue, into `out` (`[batch, c_out, out_h, out_w]`, `out_size` being [`ConvShape::output_size`]). The
/// caller checks the slices' lengths against `shape` (see [`ConvShape::lengths`]).
pub fn conv2d(
    x: &[f32],
    weight: &[f32],
    shape: &ConvShape,
    out_size: [usize; 2],
    epilogue: &Epilogue,
    out: &mut [f32],
) {
    let positions = shape.batch * out_size[0] * out_size[1];
    let schedule = Schedule::new(positions, tile_width(shape), threads());
    let out = OutPtr {
        ptr: out.as_mut_ptr(),
        len: out.len(),
        channels: shape.c_out,
        size: out_size,
    };
    let parallelism = if schedule.threads_inside_gemm() {
        gemm_on_all_threads()
    } else {
        gemm::Parallelism::None
    };
    let run_tile = |range: (usize, usize)| {
        // Taken out rather than borrowed: a thread waiting inside `gemm`'s own threads may start another
        // tile, which then finds the scratch empty and allocates its own.
        let (mut col, mut acc) = SCRATCH.take();
        let width = range.1 - range.0;
        grow(&mut acc, shape.c_out * width);
        let columns = match columns_in_place(shape, range) {
            Some(offset) => Columns {
                values: &x[offset..],
                row_stride: shape.in_h * shape.in_w,
            },
            None => {
                grow(&mut col, shape.col_len() * width);
                im2col(x, shape, out_size, range.0, range.1, &mut col);
                Columns {
                    values: &col,
                    row_stride: width,
                }
            }
        };
        multiply(weight, columns, &mut acc, shape, width, parallelism);
        // SAFETY: each tile writes only its own positions.
        unsafe { write_tile(&acc, range, epilogue, out) };
        SCRATCH.set((col, acc));
    };
    parallel_parts(schedule.parts, |part| {
        schedule.tiles(part).for_each(run_tile)
    });
}

fn grow(buffer: &mut Vec<f32>, len: usize) {
    if buffer.len() < len {
        buffer.resize(len, 0.0);
    }
}

/// A column matrix `[col_len, width]`: rows `row_stride` apart, each `width` contiguous values.
#[derive(Clone, Copy)]
struct Columns<'a> {
    values: &'a [f32],
    row_stride: usize,
}

/// `acc[c_out, width] = weight[c_out, col_len] x columns[col_len, width]`.
fn multiply(
    weight: &[f32],
    columns: Columns,
    acc: &mut [f32],
    shape: &ConvShape,
    width: usize,
    parallelism: gemm::Parallelism,
) {
    let (m, k) = (shape.c_out, shape.col_len());
    assert!(
        weight.len() >= m * k
            && columns.values.len() >= (k - 1) * columns.row_stride + width
            && acc.len() >= m * width
    );
    // SAFETY: the three matrices lie inside their slices (asserted), with the strides given.
    unsafe {
        gemm::gemm(
            m,
            width,
            k,
            acc.as_mut_ptr(),
            1,
            width as isize,
            false,
            weight.as_ptr(),
            1,
            k as isize,
            columns.values.as_ptr(),
            1,
            columns.row_stride as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// `max(x * scale + shift, 0)` per sample and channel (`scale` and `shift` `[batch, channels]`), over planes
/// of `plane` values, into `out`; with `upsample`, each value repeated 2 x 2 (`out` planes `4 * plane`, rows
/// `2 * width`).
pub fn norm_relu(
    x: &[f32],
    scale: &[f32],
    shift: &[f32],
    [height, width]: [usize; 2],
    upsample: bool,
    out: &mut [f32],
) {
    let plane = height * width;
    let out_plane = if upsample { 4 * plane } else { plane };
    let run = |(nc, dst): (usize, &mut [f32])| {
        let src = &x[nc * plane..][..plane];
        let (s, t) = (scale[nc], shift[nc]);
        if !upsample {
            for (d, &v) in dst.iter_mut().zip(src) {
                *d = relu(v * s + t);
            }
            return;
        }
        for (src_row, dst_rows) in src.chunks_exact(width).zip(dst.chunks_exact_mut(4 * width)) {
            let (top, bottom) = dst_rows.split_at_mut(2 * width);
            for (pair, &v) in top.chunks_exact_mut(2).zip(src_row) {
                let a = relu(v * s + t);
                pair[0] = a;
                pair[1] = a;
            }
            bottom.copy_from_slice(top);
        }
    };
    for_each_plane(out, out_plane, run);
}

/// Max pooling with a square window (`kernel`, `stride`, `padding`; padding never wins), over planes of
/// `[height, width]`, into `out` (planes of `out_size`). NaN wins, as in PyTorch. Each output row is the
/// maximum of its window's input rows, taken over whole rows first (which vectorises), then across columns.
pub fn max_pool2d(
    x: &[f32],
    [height, width]: [usize; 2],
    [kernel, stride, padding]: [usize; 3],
    out_size: [usize; 2],
    out: &mut [f32],
) {
    let [out_h, out_w] = out_size;
    let run = |(plane, dst): (usize, &mut [f32])| {
        let src = &x[plane * height * width..][..height * width];
        let mut rows_max = vec![f32::NEG_INFINITY; width];
        for (oy, dst_row) in dst.chunks_exact_mut(out_w).enumerate() {
            rows_max.fill(f32::NEG_INFINITY);
            let top = (oy * stride).saturating_sub(padding);
            let bottom = (oy * stride + kernel).saturating_sub(padding).min(height);
            for row in src.chunks_exact(width).take(bottom).skip(top) {
                for (m, &v) in rows_max.iter_mut().zip(row) {
                    *m = max_keeping_nan(*m, v);
                }
            }
            for (ox, d) in dst_row.iter_mut().enumerate() {
                let left = (ox * stride).saturating_sub(padding);
                let right = (ox * stride + kernel).saturating_sub(padding).min(width);
                *d = rows_max[left..right]
                    .iter()
                    .fold(f32::NEG_INFINITY, |m, &v| max_keeping_nan(m, v));
            }
        }
    };
    for_each_plane(out, out_h * out_w, run);
}

#[inline(always)]
fn max_keeping_nan(m: f32, v: f32) -> f32 {
    if v > m || v.is_nan() { v } else { m }
}

#[cfg(test)]
mod schedule_tests {
    use super::{ALIGNMENT, MIN_PART, Schedule};

    /// Every tile of every part, in order.
    fn all_tiles(schedule: &Schedule) -> Vec<(usize, usize)> {
        (0..schedule.parts)
            .flat_map(|part| schedule.tiles(part))
            .collect()
    }

    #[test]
    fn tiles_cover_every_position_once_and_fit_the_budget() {
        for positions in [1, 49, 64, 127, 128, 196, 784, 3136, 12544, 16384 + 5] {
            for max_width in [64, 128, 256, 896, 2048] {
                for threads in [1, 2, 3, 8] {
                    let schedule = Schedule::new(positions, max_width, threads);
                    let tiles = all_tiles(&schedule);
                    let mut next = 0;
                    for &(start, end) in &tiles {
                        assert_eq!(start, next, "{schedule:?}: a gap or overlap at {start}");
                        assert!(
                            end > start && end - start <= max_width,
                            "{schedule:?}: tile {start}..{end}"
                        );
                        next = end;
                    }
                    assert_eq!(next, positions, "{schedule:?}: positions left over");
                }
            }
        }
    }

    #[test]
    fn each_thread_gets_an_equal_share_aligned_to_the_lanes() {
        // ResNet-50's layers at batch 1: 784 positions in tiles of 128 used to go 4 tiles to one thread and 3
        // (the last nearly empty) to the other.
        for (positions, threads) in [(784, 2), (196, 2), (3136, 2), (12544, 3), (1000, 4)] {
            let schedule = Schedule::new(positions, 128, threads);
            assert_eq!(schedule.parts, threads);
            assert!(!schedule.threads_inside_gemm());
            for part in 0..threads {
                let (start, end) = schedule.part(part);
                let share = positions as f64 / threads as f64;
                assert!(
                    ((end - start) as f64 - share).abs() <= ALIGNMENT as f64,
                    "{schedule:?}: part {part}"
                );
                assert_eq!(
                    start % ALIGNMENT,
                    0,
                    "{schedule:?}: part {part} starts mid-vector"
                );
            }
        }
    }

    #[test]
    fn few_positions_run_as_one_part_with_gemm_threads() {
        let schedule = Schedule::new(2 * MIN_PART - 1, 2048, 2);
        assert_eq!(schedule.parts, 1);
        assert!(schedule.threads_inside_gemm());
        // One thread never asks gemm for threads it does not have.
        assert_eq!(Schedule::new(100_000, 2048, 1).parts, 1);
    }
}
