//! The per-row passes of the fused operator, written once and compiled for
//! each instruction set (AVX-512 and AVX2, picked at run time by [`Isa`]):
//! the first layer's sum into a tile row, bias and ReLU over the hidden
//! layer, and the tower's last unit with its sigmoid, in fp32 and bf16.

use super::Isa;

/// Round to nearest even; inputs are finite and ≥ 0 (after a ReLU).
/// Wrapping arithmetic: an overflow check would keep the loop scalar.
#[inline(always)]
fn to_bf16(v: f32) -> u16 {
    let bits = v.to_bits();
    (bits.wrapping_add(0x7FFF + ((bits >> 16) & 1)) >> 16) as u16
}

#[inline(always)]
fn from_bf16(v: u16) -> f32 {
    f32::from_bits((v as u32) << 16)
}

#[inline(always)]
fn relu(v: f32) -> f32 {
    if v > 0.0 { v } else { 0.0 }
}

// Indexed loops over slices cut to one length: the form the
// auto-vectoriser reliably turns into full-width vector code.
#[inline(always)]
fn first_generic(out: &mut [f32], user: &[f32], campaign: &[f32], affinity: f32, direction: &[f32]) {
    let n = out.len();
    let (user, campaign, direction) = (&user[..n], &campaign[..n], &direction[..n]);
    for i in 0..n {
        out[i] = relu(user[i] + campaign[i] + affinity * direction[i]);
    }
}

#[inline(always)]
fn first_bf16_generic(out: &mut [u16], user: &[f32], campaign: &[f32], affinity: f32, direction: &[f32]) {
    let n = out.len();
    let (user, campaign, direction) = (&user[..n], &campaign[..n], &direction[..n]);
    for i in 0..n {
        out[i] = to_bf16(relu(user[i] + campaign[i] + affinity * direction[i]));
    }
}

/// Each row of `values` (rows of `bias.len()`) ← relu(row + bias).
#[inline(always)]
fn bias_relu_generic(values: &mut [f32], bias: &[f32]) {
    let width = bias.len();
    for row in values.chunks_exact_mut(width) {
        for i in 0..width {
            row[i] = relu(row[i] + bias[i]);
        }
    }
}

#[inline(always)]
fn bias_relu_bf16_generic(values: &mut [u16], bias: &[f32]) {
    let width = bias.len();
    for row in values.chunks_exact_mut(width) {
        for i in 0..width {
            row[i] = to_bf16(relu(from_bf16(row[i]) + bias[i]));
        }
    }
}

/// Per row of `tower` values: `sigmoid(last · relu(row + bias) +
/// last_bias)`, the dot product in 16 fixed lanes (vectorisable, the
/// same order on every CPU).
#[inline(always)]
fn last_generic<T: Copy>(
    out: &mut [f32],
    tower: &[T],
    bias: &[f32],
    last: &[f32],
    last_bias: f32,
    value: impl Fn(T) -> f32,
) {
    let width = last.len();
    let bias = &bias[..width];
    for (o, row) in out.iter_mut().zip(tower.chunks_exact(width)) {
        let mut lanes = [0.0f32; 16];
        for ((values, biases), weights) in row.chunks_exact(16).zip(bias.chunks_exact(16)).zip(last.chunks_exact(16)) {
            for l in 0..16 {
                lanes[l] += relu(value(values[l]) + biases[l]) * weights[l];
            }
        }
        let mut logit = last_bias;
        let tail = width - width % 16;
        for i in tail..width {
            logit += relu(value(row[i]) + bias[i]) * last[i];
        }
        let logit = logit + lanes.iter().sum::<f32>();
        *o = 1.0 / (1.0 + (-logit).exp());
    }
}

macro_rules! dispatch {
    ($name:ident, $generic:expr, ($($arg:ident: $ty:ty),*)) => {
        pub fn $name(isa: Isa, $($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
                fn avx512($($arg: $ty),*) { $generic($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) { $generic($($arg),*) }
                match isa {
                    // SAFETY: `Isa::detect` found these instructions on this CPU.
                    Isa::Avx512 => return unsafe { avx512($($arg),*) },
                    Isa::Avx2 => return unsafe { avx2($($arg),*) },
                    Isa::Baseline => {}
                }
            }
            let _ = isa;
            $generic($($arg),*)
        }
    };
}

dispatch!(first_f32, first_generic, (out: &mut [f32], user: &[f32], campaign: &[f32], affinity: f32, direction: &[f32]));
/// As [`first_bf16_generic`]; bf16 runs only where the CPU has AVX-512
/// BF16 ([`super::Kernel::new`] checks), so it always takes the
/// instruction that converts 16 floats at once.
pub fn first_bf16(isa: Isa, out: &mut [u16], user: &[f32], campaign: &[f32], affinity: f32, direction: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512 && super::bf16_supported() {
        // SAFETY: the CPU has the instructions (checked just above).
        return unsafe { native::first_bf16(out, user, campaign, affinity, direction) };
    }
    first_bf16_generic(out, user, campaign, affinity, direction)
}

/// As [`bias_relu_bf16_generic`], with the native conversion where there is one.
pub fn bias_relu_bf16(isa: Isa, values: &mut [u16], bias: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512 && super::bf16_supported() {
        // SAFETY: as above.
        return unsafe { native::bias_relu_bf16(values, bias) };
    }
    bias_relu_bf16_generic(values, bias)
}

/// AVX-512 BF16 forms of the bf16 passes (16 lanes; widths are multiples
/// of 16). Vectors move in and out as plain arrays: pointer loads and
/// stores carry debug-build checks that would force every vector through
/// the stack.
#[cfg(target_arch = "x86_64")]
mod native {
    use std::arch::x86_64::*;

    type Floats = [f32; 16];
    type Halves = [u16; 16];

    /// Splits a slice into 16-lane arrays.
    fn lanes<T>(values: &[T]) -> impl Iterator<Item = &[T; 16]> {
        values.chunks_exact(16).map(|c| c.try_into().expect("16 lanes"))
    }

    fn lanes_mut<T>(values: &mut [T]) -> impl Iterator<Item = &mut [T; 16]> {
        values.chunks_exact_mut(16).map(|c| c.try_into().expect("16 lanes"))
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
    fn to_bf16(v: __m512) -> Halves {
        // SAFETY: both are 32 bytes of plain data.
        unsafe { std::mem::transmute::<__m256bh, Halves>(_mm512_cvtneps_pbh(v)) }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
    fn floats(v: &Floats) -> __m512 {
        // SAFETY: both are 64 bytes of plain data.
        unsafe { std::mem::transmute::<Floats, __m512>(*v) }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
    pub fn first_bf16(out: &mut [u16], user: &[f32], campaign: &[f32], affinity: f32, direction: &[f32]) {
        assert!(out.len().is_multiple_of(16));
        let (a, zero) = (_mm512_set1_ps(affinity), _mm512_setzero_ps());
        for (((o, u), c), d) in lanes_mut(out).zip(lanes(user)).zip(lanes(campaign)).zip(lanes(direction)) {
            let v = _mm512_add_ps(_mm512_add_ps(floats(u), floats(c)), _mm512_mul_ps(a, floats(d)));
            *o = to_bf16(_mm512_max_ps(v, zero));
        }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
    pub fn bias_relu_bf16(values: &mut [u16], bias: &[f32]) {
        let width = bias.len();
        assert!(width.is_multiple_of(16) && values.len().is_multiple_of(width));
        let zero = _mm512_setzero_ps();
        for row in values.chunks_exact_mut(width) {
            for (v, b) in lanes_mut(row).zip(lanes(bias)) {
                // SAFETY: 32 bytes of plain data either way.
                let raw = unsafe { std::mem::transmute::<Halves, __m256i>(*v) };
                let x = _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(raw)));
                *v = to_bf16(_mm512_max_ps(_mm512_add_ps(x, floats(b)), zero));
            }
        }
    }
}

dispatch!(bias_relu_f32, bias_relu_generic, (values: &mut [f32], bias: &[f32]));
dispatch!(
    last_f32,
    |out, tower, bias, last, last_bias| last_generic(out, tower, bias, last, last_bias, |v: f32| v),
    (out: &mut [f32], tower: &[f32], bias: &[f32], last: &[f32], last_bias: f32)
);
dispatch!(
    last_bf16,
    |out, tower, bias, last, last_bias| last_generic(out, tower, bias, last, last_bias, from_bf16),
    (out: &mut [f32], tower: &[u16], bias: &[f32], last: &[f32], last_bias: f32)
);

#[cfg(test)]
mod tests {
    #[test]
    fn bf16_rounds_to_nearest_even() {
        assert_eq!(super::to_bf16(1.0), 0x3F80);
        assert_eq!(super::from_bf16(super::to_bf16(1.0 + 1.0 / 256.0)), 1.0);
        assert_eq!(super::from_bf16(super::to_bf16(1.0 + 3.0 / 256.0)), 1.0 + 4.0 / 256.0);
        assert_eq!(super::from_bf16(super::to_bf16(0.0)), 0.0);
    }
}
