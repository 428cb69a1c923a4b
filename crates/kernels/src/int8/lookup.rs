//! A 256-entry byte table applied to a slice in place, with vector
//! permutes where the CPU has them: on x86-64 with AVX-512 VBMI, two
//! two-register byte permutes and a blend look up 64 bytes; on aarch64,
//! one `TBL` and three `TBX` on four-register tables look up 16. Elsewhere
//! a byte at a time, which costs as much as the requantization it follows
//! (a SiLU table folded into YOLOX's convolutions saved no time that way).

/// `bytes[i] = table[bytes[i]]` for every byte.
pub(crate) fn apply(table: &[u8; 256], bytes: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512vbmi")
        && std::arch::is_x86_feature_detected!("avx512bw")
    {
        // SAFETY: the CPU has AVX-512 VBMI and BW, checked just above.
        unsafe { apply_avx512vbmi(table, bytes) };
        return;
    }
    #[cfg(target_arch = "aarch64")]
    {
        // SAFETY: NEON is part of the aarch64 baseline.
        unsafe { apply_neon(table, bytes) };
        return;
    }
    #[allow(unreachable_code)]
    apply_bytes(table, bytes);
}

fn apply_bytes(table: &[u8; 256], bytes: &mut [u8]) {
    for b in bytes {
        *b = table[usize::from(*b)];
    }
}

/// # Safety
/// The CPU must have AVX-512 F, BW and VBMI.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
unsafe fn apply_avx512vbmi(table: &[u8; 256], bytes: &mut [u8]) {
    use std::arch::x86_64::*;
    // SAFETY: the table is 256 bytes, read as four 64-byte vectors; every
    // load and store below stays inside `bytes` (the tail is masked).
    unsafe {
        let t = table.as_ptr() as *const __m512i;
        let (t0, t1) = (_mm512_loadu_si512(t), _mm512_loadu_si512(t.add(1)));
        let (t2, t3) = (_mm512_loadu_si512(t.add(2)), _mm512_loadu_si512(t.add(3)));
        let look = |x: __m512i| {
            // The low 7 bits pick among 128 entries; bit 7 picks the half.
            let low = _mm512_permutex2var_epi8(t0, x, t1);
            let high = _mm512_permutex2var_epi8(t2, x, t3);
            _mm512_mask_blend_epi8(_mm512_movepi8_mask(x), low, high)
        };
        let mut chunks = bytes.chunks_exact_mut(64);
        for chunk in &mut chunks {
            let p = chunk.as_mut_ptr() as *mut __m512i;
            _mm512_storeu_si512(p, look(_mm512_loadu_si512(p)));
        }
        let tail = chunks.into_remainder();
        if !tail.is_empty() {
            let mask: __mmask64 = (1u64 << tail.len()) - 1;
            let p = tail.as_mut_ptr() as *mut i8;
            let x = _mm512_maskz_loadu_epi8(mask, p);
            _mm512_mask_storeu_epi8(p, mask, look(x));
        }
    }
}

/// # Safety
/// NEON only (the aarch64 baseline).
#[cfg(target_arch = "aarch64")]
unsafe fn apply_neon(table: &[u8; 256], bytes: &mut [u8]) {
    use std::arch::aarch64::*;
    // SAFETY: the table is 256 bytes, read as four 64-byte quads; the loads
    // and stores cover whole 16-byte chunks of `bytes`.
    unsafe {
        let t = table.as_ptr();
        let quads = [
            vld1q_u8_x4(t),
            vld1q_u8_x4(t.add(64)),
            vld1q_u8_x4(t.add(128)),
            vld1q_u8_x4(t.add(192)),
        ];
        let step = vdupq_n_u8(64);
        let mut chunks = bytes.chunks_exact_mut(16);
        for chunk in &mut chunks {
            let p = chunk.as_mut_ptr();
            let x = vld1q_u8(p);
            // TBL gives 0 out of range, TBX keeps the lane: each quad fills
            // the lanes whose index falls in its 64.
            let mut y = vqtbl4q_u8(quads[0], x);
            let x = vsubq_u8(x, step);
            y = vqtbx4q_u8(y, quads[1], x);
            let x = vsubq_u8(x, step);
            y = vqtbx4q_u8(y, quads[2], x);
            let x = vsubq_u8(x, step);
            y = vqtbx4q_u8(y, quads[3], x);
            vst1q_u8(p, y);
        }
        apply_bytes(table, chunks.into_remainder());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every byte value, at every length around the vector widths, maps as
    /// the table says.
    #[test]
    fn looks_up_every_byte() {
        let table: [u8; 256] = std::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(11));
        for len in [0, 1, 15, 16, 17, 63, 64, 65, 200, 256, 1000] {
            let mut bytes: Vec<u8> = (0..len).map(|i| (i * 101 + 7) as u8).collect();
            let expected: Vec<u8> = bytes.iter().map(|&b| table[usize::from(b)]).collect();
            apply(&table, &mut bytes);
            assert_eq!(bytes, expected, "length {len}");
        }
    }
}
