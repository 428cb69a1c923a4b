//! Packing int8 activations into the layouts of tract-linalg's integer
//! kernels, from rows already in memory.
//!
//! tract's own packer for the K=4-interleaved layout (`PackedI8K4::pack_view`)
//! moves one byte at a time through strided pointers: it was 12% of an INT8
//! frame of PP-OCRv4 det (`docs/benchmarks.md`). Here four source rows of 16
//! columns are interleaved with byte and word unpacks (SSE2 on x86-64, NEON
//! zips on aarch64), 64 bytes per step.

use edgewise_graph::tract_onnx::prelude::DatumType;
use tract_linalg::pack::{PackedFormat, PackedI8K4};

/// A B-side layout [`pack_rows`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Layout {
    /// tract's `PackedFormat` for i8: per panel of `r` columns, `k` records
    /// of `r` bytes, then zeroed records up to `panel` bytes.
    KOuter {
        r: usize,
        end_records: usize,
        align: usize,
    },
    /// tract's `PackedI8K4`: per panel of `r` columns, `k / 4` blocks of `r`
    /// lanes of 4 consecutive `k` values (what VNNI and SDOT read).
    K4 { r: usize },
}

impl Layout {
    /// The layout of `format`, if [`pack_rows`] can write it.
    pub fn of(format: &dyn tract_linalg::mmm::MMMInputFormat) -> Option<Layout> {
        if let Some(f) = format.downcast_ref::<PackedI8K4>() {
            return Some(Layout::K4 { r: f.r });
        }
        let f = format.downcast_ref::<PackedFormat>()?;
        (f.dt.unquantized() == DatumType::I8).then_some(Layout::KOuter {
            r: f.r,
            end_records: f.end_padding_record,
            align: f.alignment().max(1),
        })
    }

    /// Columns per panel.
    pub fn r(&self) -> usize {
        match *self {
            Layout::KOuter { r, .. } | Layout::K4 { r } => r,
        }
    }

    /// Bytes of one panel for a depth of `k`.
    pub fn panel_bytes(&self, k: usize) -> usize {
        match *self {
            // `PackedFormat::single_panel_len`.
            Layout::KOuter {
                r,
                end_records,
                align,
            } => ((k + end_records) * r).next_multiple_of(align),
            Layout::K4 { r } => k.div_ceil(4) * 4 * r,
        }
    }
}

/// Packs the `k x cols` matrix whose row `i` is `row(i)` (at least `cols`
/// bytes long) into `dst`, in `layout`. `dst` holds `cols.div_ceil(r)`
/// panels; the lanes past `cols` in the last panel and the depth padding of
/// [`Layout::K4`] are zeroed.
pub(crate) fn pack_rows<'a>(
    layout: Layout,
    row: impl Fn(usize) -> &'a [i8],
    k: usize,
    cols: usize,
    dst: &mut [i8],
) {
    let r = layout.r();
    let panel = layout.panel_bytes(k);
    assert!(
        dst.len() >= cols.div_ceil(r) * panel,
        "destination too short"
    );
    match layout {
        Layout::KOuter { .. } => {
            let panels = cols.div_ceil(r);
            for i in 0..k {
                let src = row(i);
                assert!(src.len() >= cols, "row {i} too short");
                for (p, out) in dst.chunks_exact_mut(panel).take(panels).enumerate() {
                    let c0 = p * r;
                    let width = r.min(cols - c0);
                    let record = &mut out[i * r..(i + 1) * r];
                    record[..width].copy_from_slice(&src[c0..c0 + width]);
                    record[width..].fill(0);
                }
            }
            for out in dst.chunks_exact_mut(panel).take(panels) {
                out[k * r..].fill(0);
            }
        }
        Layout::K4 { .. } => {
            for block in 0..k.div_ceil(4) {
                let rows: [Option<&[i8]>; 4] = std::array::from_fn(|j| {
                    let i = block * 4 + j;
                    (i < k).then(|| {
                        let src = row(i);
                        assert!(src.len() >= cols, "row {i} too short");
                        &src[..cols]
                    })
                });
                interleave4(rows, cols, r, panel, &mut dst[block * 4 * r..]);
            }
        }
    }
}

/// Writes one block of four rows into every panel: column `c` of row `j`
/// goes to `out[(c / r) * panel + (c % r) * 4 + j]` (a missing row reads
/// as zeros), and the lanes after `cols` in the last panel are zeroed.
/// Sixteen columns at a time go through [`interleave16`], whose four
/// 16-byte pieces hold four columns each: a power of two `r` from 4 up
/// (tract's kernels use 8, 16 and 32) keeps a piece inside one panel, and
/// the panel index is a shift.
fn interleave4(rows: [Option<&[i8]>; 4], cols: usize, r: usize, panel: usize, out: &mut [i8]) {
    let offset = |c: usize| (c / r) * panel + (c % r) * 4;
    #[cfg_attr(
        not(any(target_arch = "x86_64", target_arch = "aarch64")),
        allow(unused_mut)
    )]
    let mut done = 0;
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    if r >= 4 && r.is_power_of_two() && rows.iter().all(Option::is_some) {
        let shift = r.trailing_zeros();
        let offset = |c: usize| (c >> shift) * panel + (c & (r - 1)) * 4;
        let rows = rows.map(|r| r.unwrap_or_default());
        let mut pieces = [0i8; 64];
        while done + 16 <= cols {
            // SAFETY: each row has `cols` bytes, so the 16 read from `done`
            // are in bounds, and `pieces` holds the 64 written.
            unsafe {
                interleave16(
                    [
                        rows[0].as_ptr().add(done),
                        rows[1].as_ptr().add(done),
                        rows[2].as_ptr().add(done),
                        rows[3].as_ptr().add(done),
                    ],
                    pieces.as_mut_ptr(),
                )
            };
            for (q, piece) in pieces.chunks_exact(16).enumerate() {
                let at = offset(done + 4 * q);
                out[at..at + 16].copy_from_slice(piece);
            }
            done += 16;
        }
    }
    for c in done..cols {
        let at = offset(c);
        for (j, row) in rows.iter().enumerate() {
            out[at + j] = row.map_or(0, |r| r[c]);
        }
    }
    let tail = cols.next_multiple_of(r);
    for c in cols..tail {
        let at = offset(c);
        out[at..at + 4].fill(0);
    }
}

/// 16 lanes of four rows, interleaved into 64 bytes.
///
/// # Safety
/// Each `rows[j]` must be readable for 16 bytes and `out` writable for 64.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn interleave16(rows: [*const i8; 4], out: *mut i8) {
    use std::arch::x86_64::*;
    // SAFETY: SSE2 is part of the x86-64 baseline; the caller keeps the
    // 16-byte loads and the four 16-byte stores in bounds.
    unsafe {
        let load = |p: *const i8| _mm_loadu_si128(p as *const __m128i);
        let (r0, r1, r2, r3) = (load(rows[0]), load(rows[1]), load(rows[2]), load(rows[3]));
        let a_lo = _mm_unpacklo_epi8(r0, r1);
        let a_hi = _mm_unpackhi_epi8(r0, r1);
        let b_lo = _mm_unpacklo_epi8(r2, r3);
        let b_hi = _mm_unpackhi_epi8(r2, r3);
        let out = out as *mut __m128i;
        _mm_storeu_si128(out, _mm_unpacklo_epi16(a_lo, b_lo));
        _mm_storeu_si128(out.add(1), _mm_unpackhi_epi16(a_lo, b_lo));
        _mm_storeu_si128(out.add(2), _mm_unpacklo_epi16(a_hi, b_hi));
        _mm_storeu_si128(out.add(3), _mm_unpackhi_epi16(a_hi, b_hi));
    }
}

/// 16 lanes of four rows, interleaved into 64 bytes.
///
/// # Safety
/// Each `rows[j]` must be readable for 16 bytes and `out` writable for 64.
#[cfg(target_arch = "aarch64")]
#[inline(always)]
unsafe fn interleave16(rows: [*const i8; 4], out: *mut i8) {
    use std::arch::aarch64::*;
    // SAFETY: NEON is part of the aarch64 baseline; the caller keeps the
    // 16-byte loads and the four 16-byte stores in bounds.
    unsafe {
        let (r0, r1) = (vld1q_s8(rows[0]), vld1q_s8(rows[1]));
        let (r2, r3) = (vld1q_s8(rows[2]), vld1q_s8(rows[3]));
        let a_lo = vreinterpretq_s16_s8(vzip1q_s8(r0, r1));
        let a_hi = vreinterpretq_s16_s8(vzip2q_s8(r0, r1));
        let b_lo = vreinterpretq_s16_s8(vzip1q_s8(r2, r3));
        let b_hi = vreinterpretq_s16_s8(vzip2q_s8(r2, r3));
        vst1q_s8(out, vreinterpretq_s8_s16(vzip1q_s16(a_lo, b_lo)));
        vst1q_s8(out.add(16), vreinterpretq_s8_s16(vzip2q_s16(a_lo, b_lo)));
        vst1q_s8(out.add(32), vreinterpretq_s8_s16(vzip1q_s16(a_hi, b_hi)));
        vst1q_s8(out.add(48), vreinterpretq_s8_s16(vzip2q_s16(a_hi, b_hi)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgewise_graph::tract_onnx::prelude::*;
    use tract_linalg::mmm::MMMInputFormat;

    /// Our packing must be byte for byte tract's, for every shape edge:
    /// depth not a multiple of 4, a partial last panel, a row stride wider
    /// than the columns.
    #[test]
    fn packing_matches_tract() {
        for (k, cols, stride) in [
            (1, 1, 1),
            (5, 37, 40),
            (8, 16, 16),
            (27, 100, 131),
            (64, 48, 48),
            (12, 72, 80),
        ] {
            let src: Vec<i8> = (0..k * stride).map(|i| (i * 31 % 251) as i8).collect();
            let rows: Vec<i8> = (0..k)
                .flat_map(|i| src[i * stride..i * stride + cols].to_vec())
                .collect();
            let matrix = Tensor::from_shape(&[k, cols], &rows).unwrap();
            let formats: Vec<Box<dyn MMMInputFormat>> = vec![
                Box::new(PackedI8K4::new(16)),
                Box::new(PackedI8K4::new(8)),
                Box::new(PackedI8K4::new(32)),
                Box::new(PackedFormat::new(i8::datum_type(), 8, 16)),
                Box::new(PackedFormat::new(i8::datum_type(), 16, 16).with_end_padding_record(0)),
            ];
            for format in formats {
                let layout = Layout::of(&*format).unwrap();
                let theirs = format.prepare_one(&matrix, 0, 1).unwrap();
                let panels = cols.div_ceil(layout.r());
                let mut ours = vec![99i8; panels * layout.panel_bytes(k)];
                pack_rows(layout, |i| &src[i * stride..], k, cols, &mut ours);
                for p in 0..panels {
                    // SAFETY: tract's packed input holds `panel_bytes(k)`
                    // bytes per panel, and i8 has no invalid values.
                    let expected = unsafe {
                        std::slice::from_raw_parts(
                            theirs.panel_bytes(p, None).unwrap() as *const i8,
                            layout.panel_bytes(k),
                        )
                    };
                    let got = &ours[p * layout.panel_bytes(k)..][..layout.panel_bytes(k)];
                    let width = layout.r().min(cols - p * layout.r());
                    // Lanes past the last column and records past the depth
                    // (tract leaves what it likes there) are never read back;
                    // compare the bytes that are.
                    for (i, (g, e)) in got.iter().zip(expected).enumerate() {
                        let (lane, depth) = match layout {
                            Layout::K4 { r } => ((i % (4 * r)) / 4, i / (4 * r) * 4 + i % 4),
                            Layout::KOuter { r, .. } => (i % r, i / r),
                        };
                        if lane < width && depth < k {
                            assert_eq!(g, e, "{format} k={k} cols={cols} panel {p} byte {i}");
                        }
                    }
                }
            }
        }
    }
}
