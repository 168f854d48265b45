//! How closely two float32 forward passes of the network must agree when they
//! run on different kernels: PyTorch on another CPU (the TorchScript
//! fixture), libtorch against the scoring kernel, one batch shape against
//! another. Such results are never bitwise equal across CPUs, so the bound is
//! argued from float32 and the network's depth, not from a value one machine
//! printed. Computations that must be deterministic within one process (the
//! same kernel on the same tiles) are compared bitwise elsewhere.
//!
//! The argument. Each layer computes dot products of length K (its fan-in)
//! in float32. Kernels differ in summation order (blocking, vector width,
//! fused multiply-add), and each correctly rounded order is within
//! γ_K·Σ|x_i·w_i| of the exact result, γ_K = K·u/(1 − K·u), u = 2⁻²⁴
//! (Higham, *Accuracy and Stability of Numerical Algorithms*, §3.1). Two
//! kernels therefore differ by at most 2·γ_K·Σ|x_i·w_i| per layer. The inputs
//! are normalised, batch norm rescales the first layer, and the layers keep
//! their activations of order one, so we take Σ|x_i·w_i| ≤ 1 + |z|, z the
//! logit. ReLU and the affine maps pass an error on without growing it beyond
//! that scale, so the errors of the layers add:
//!
//!   |Δz| ≤ 2·u·(K₁ + K₂ + … + K_L)·(1 + |z|)
//!
//! The sigmoid's slope is p(1 − p), and each side rounds p once more (u each):
//!
//!   |Δp| ≤ p(1 − p)·|Δz| + 2u + 2u (a margin of one more rounding per side).
//!
//! For the default network (fan-ins 109, 256, 128, 64) at p = 0.5 this is
//! about 1.7e-5: below any error that matters to a ranking (a wrong weight,
//! a missing normalisation, a swapped head move p by 1e-3 or more), and above
//! what changing the summation order can do.

use audience::model::features::FeatureSpec;
use audience::model::network::Architecture;
use tch::Tensor;

/// Unit roundoff of float32.
const U: f64 = 1.0 / (1u64 << 24) as f64;

/// The fan-ins of the network's layers along the path to one head: the first
/// layer's input width, the second encoder layer, the tower, its last unit.
pub fn fan_ins(spec: &FeatureSpec, architecture: &Architecture) -> Vec<usize> {
    let first = spec.user.input_width() + spec.campaign.input_width() + spec.pair.input_width();
    vec![
        first as usize,
        architecture.encoder[0] as usize,
        architecture.encoder[1] as usize,
        architecture.tower as usize,
    ]
}

/// The default network's fan-ins for the default features.
pub fn default_fan_ins() -> Vec<usize> {
    fan_ins(&FeatureSpec::default(), &Architecture::default())
}

/// The largest difference two kernels' float32 probabilities may show where
/// one of them is `p` (see the module's argument).
pub fn tolerance(fan_ins: &[usize], p: f64) -> f64 {
    let depth: usize = fan_ins.iter().sum();
    let p = p.clamp(U, 1.0 - U);
    let z = (p / (1.0 - p)).ln();
    p * (1.0 - p) * 2.0 * U * depth as f64 * (1.0 + z.abs()) + 4.0 * U
}

/// Asserts that each of `actual` is within [`tolerance`] of `expected`; the
/// message names the worst element, its values and its bound.
pub fn assert_close(actual: &[f32], expected: &[f32], fan_ins: &[usize], what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: lengths differ");
    let mut worst: Option<(usize, f64)> = None;
    for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        let excess = (a as f64 - e as f64).abs() / tolerance(fan_ins, e as f64);
        // A NaN excess (a NaN probability) is the worst of all.
        if excess.is_nan() || excess > worst.map_or(0.0, |(_, w)| w) {
            worst = Some((i, excess));
        }
    }
    if let Some((i, excess)) = worst {
        let (a, e) = (actual[i], expected[i]);
        assert!(
            excess <= 1.0,
            "{what}: element {i} is {a} where {e} was expected: difference {:.3e}, bound {:.3e} (float32 across kernels, depth {})",
            (a - e).abs(),
            tolerance(fan_ins, e as f64),
            fan_ins.iter().sum::<usize>()
        );
        eprintln!("{what}: largest difference at {:.1}% of its bound", 100.0 * excess);
    }
}

/// [`assert_close`] on two tensors of the same shape.
pub fn assert_tensors_close(actual: &Tensor, expected: &Tensor, fan_ins: &[usize], what: &str) {
    assert_eq!(actual.size(), expected.size(), "{what}: shapes differ");
    let flat = |t: &Tensor| Vec::<f32>::try_from(t.to_kind(tch::Kind::Float).contiguous().view([-1])).unwrap();
    assert_close(&flat(actual), &flat(expected), fan_ins, what);
}

#[test]
fn the_bound_is_tight_enough_to_catch_a_wrong_probability() {
    let fan_ins = default_fan_ins();
    for p in [1e-6, 0.01, 0.3, 0.5, 0.9, 0.999_999] {
        let bound = tolerance(&fan_ins, p);
        // Well above float32's own resolution of p, well below a change that matters.
        assert!(bound > 2.0 * U && bound < 1e-4, "p = {p}: bound {bound}");
    }
    assert!(tolerance(&fan_ins, 0.5) > tolerance(&fan_ins[..1], 0.5), "deeper networks get more room");
}
