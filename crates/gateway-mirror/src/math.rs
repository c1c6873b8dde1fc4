//! The statistics behind the verdict, with no dependencies.
//!
//! - [`wilson_interval`]: a confidence interval on a proportion (the match
//!   rate) that behaves at 0 % and 100 % and with small samples, unlike the
//!   normal (Wald) interval.
//! - [`mann_whitney`]: the rank-sum test Kayenta uses to tell whether one
//!   latency distribution is shifted above another, with the normal
//!   approximation, tie correction and continuity correction. It makes no
//!   assumption about the shape of the distributions (latency is skewed).
//! - [`normal_cdf`] / [`normal_quantile`] for both.

/// Standard normal cumulative distribution function Φ(x).
pub fn normal_cdf(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

/// Complementary error function (W. J. Cody's rational Chebyshev
/// approximation as in Numerical Recipes' `erfcc`, |relative error| < 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// The standard normal quantile Φ⁻¹(p) for 0 < p < 1 (Acklam's algorithm,
/// relative error < 1.2e-9). Returns ±infinity at 0 and 1 and NaN outside.
pub fn normal_quantile(p: f64) -> f64 {
    if p.is_nan() || !(0.0..=1.0).contains(&p) {
        return f64::NAN;
    }
    if p == 0.0 {
        return f64::NEG_INFINITY;
    }
    if p == 1.0 {
        return f64::INFINITY;
    }
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    const LOW: f64 = 0.024_25;
    if p < LOW {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - LOW {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        let q = (-2.0 * (1.0 - p).ln()).sqrt();
        -(((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    }
}

/// Wilson score interval `(lower, upper)` for `successes` out of `n` with
/// critical value `z` (e.g. 1.645 for a one-sided 95 % bound). `(0, 1)` when
/// `n` is 0: nothing is known.
pub fn wilson_interval(successes: u64, n: u64, z: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let n = n as f64;
    let p = (successes as f64 / n).clamp(0.0, 1.0);
    let z2 = z * z;
    let denom = 1.0 + z2 / n;
    let centre = p + z2 / (2.0 * n);
    let half = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    (
        ((centre - half) / denom).clamp(0.0, 1.0),
        ((centre + half) / denom).clamp(0.0, 1.0),
    )
}

/// Result of a Mann-Whitney U test of `x` against `y`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MannWhitney {
    /// U statistic of `x` (number of pairs where x > y, ties count half).
    pub u: f64,
    /// Standardised statistic (positive: `x` tends to be larger).
    pub z: f64,
    /// One-sided p-value of "x is stochastically greater than y".
    pub p_greater: f64,
    /// Two-sided p-value.
    pub p_two_sided: f64,
    /// Common-language effect size: P(x > y) + P(x = y) / 2.
    pub effect: f64,
}

/// Mann-Whitney U test with the normal approximation, tie correction and
/// continuity correction (as scipy's `mannwhitneyu(method="asymptotic")`).
/// `None` when either sample is empty.
pub fn mann_whitney(x: &[f64], y: &[f64]) -> Option<MannWhitney> {
    let (n1, n2) = (x.len(), y.len());
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let mut all: Vec<(f64, bool)> = x
        .iter()
        .map(|v| (*v, true))
        .chain(y.iter().map(|v| (*v, false)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = all.len();
    let mut rank_sum_x = 0.0;
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i + 1;
        while j < n && all[j].0 == all[i].0 {
            j += 1;
        }
        // Ranks i+1..=j share their average.
        let avg = (i + 1 + j) as f64 / 2.0;
        let t = (j - i) as f64;
        tie_term += t * t * t - t;
        rank_sum_x += avg * all[i..j].iter().filter(|e| e.1).count() as f64;
        i = j;
    }
    let (f1, f2, nf) = (n1 as f64, n2 as f64, n as f64);
    let u = rank_sum_x - f1 * (f1 + 1.0) / 2.0;
    let mean = f1 * f2 / 2.0;
    let var = f1 * f2 / 12.0 * ((nf + 1.0) - tie_term / (nf * (nf - 1.0)));
    let effect = u / (f1 * f2);
    if var <= 0.0 {
        // Every value tied: no evidence of any shift.
        return Some(MannWhitney {
            u,
            z: 0.0,
            p_greater: 1.0,
            p_two_sided: 1.0,
            effect,
        });
    }
    let sd = var.sqrt();
    let z = (u - mean) / sd;
    let z_greater = (u - mean - 0.5) / sd;
    let z_two = ((u - mean).abs() - 0.5).max(0.0) / sd;
    Some(MannWhitney {
        u,
        z,
        p_greater: 1.0 - normal_cdf(z_greater),
        p_two_sided: (2.0 * (1.0 - normal_cdf(z_two))).min(1.0),
        effect,
    })
}

/// The `q` quantile (0..=1) of `values` by linear interpolation; `None` when
/// empty.
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    Some(v[lo] + (v[hi] - v[lo]) * (pos - lo as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) {
        assert!((a - b).abs() <= tol, "{a} != {b} (±{tol})");
    }

    #[test]
    fn normal_functions_match_tables() {
        close(normal_cdf(0.0), 0.5, 1e-7);
        close(normal_cdf(1.96), 0.975_002, 1e-6);
        close(normal_cdf(-1.644_854), 0.05, 1e-6);
        close(normal_quantile(0.975), 1.959_964, 1e-6);
        close(normal_quantile(0.95), 1.644_854, 1e-6);
        close(normal_quantile(0.01), -2.326_348, 1e-6);
        close(normal_quantile(0.999), 3.090_232, 1e-6);
        assert!(normal_quantile(1.5).is_nan());
    }

    #[test]
    fn wilson_matches_known_intervals() {
        // 50/100 at 95 % two-sided: [0.4038, 0.5962].
        let (lo, hi) = wilson_interval(50, 100, 1.959_964);
        close(lo, 0.403_8, 1e-4);
        close(hi, 0.596_2, 1e-4);
        // 0/10: [0, 0.2775].
        let (lo, hi) = wilson_interval(0, 10, 1.959_964);
        close(lo, 0.0, 1e-12);
        close(hi, 0.277_5, 1e-4);
        // All matching: lower bound n / (n + z²).
        let z = 1.644_854;
        let (lo, _) = wilson_interval(300, 300, z);
        close(lo, 300.0 / (300.0 + z * z), 1e-12);
        assert_eq!(wilson_interval(0, 0, z), (0.0, 1.0));
    }

    #[test]
    fn mann_whitney_matches_hand_computation() {
        // x entirely above y: U = 9, mean 4.5, sd sqrt(5.25).
        let r = mann_whitney(&[4.0, 5.0, 6.0], &[1.0, 2.0, 3.0]).unwrap();
        close(r.u, 9.0, 1e-12);
        close(r.z, 4.5 / 5.25f64.sqrt(), 1e-12);
        // scipy.stats.mannwhitneyu(x, y, method="asymptotic"): p = 0.080856.
        close(r.p_two_sided, 0.080_856, 2e-5);
        close(r.p_greater, 0.040_428, 2e-5);
        close(r.effect, 1.0, 1e-12);
        // Ties: x=[1,2,2,3], y=[2,3,3,4]. Ranks: 1→1, 2→3 (×3), 3→6 (×3), 4→8.
        // R_x = 1+3+3+6 = 13, U = 13 - 10 = 3; ties t=3,3 → Σ(t³-t) = 48.
        let r = mann_whitney(&[1.0, 2.0, 2.0, 3.0], &[2.0, 3.0, 3.0, 4.0]).unwrap();
        close(r.u, 3.0, 1e-12);
        let var: f64 = 16.0 / 12.0 * (9.0 - 48.0 / 56.0);
        close(r.z, (3.0 - 8.0) / var.sqrt(), 1e-12);
        close(
            r.p_two_sided,
            2.0 * (1.0 - normal_cdf(4.5 / var.sqrt())),
            1e-9,
        );
        // All tied: no evidence.
        let r = mann_whitney(&[1.0, 1.0], &[1.0, 1.0]).unwrap();
        assert_eq!(r.p_greater, 1.0);
        assert!(mann_whitney(&[], &[1.0]).is_none());
    }

    #[test]
    fn quantiles_interpolate() {
        assert_eq!(quantile(&[], 0.5), None);
        close(quantile(&[3.0, 1.0, 2.0, 4.0], 0.5).unwrap(), 2.5, 1e-12);
        close(
            quantile(&[1.0, 2.0, 3.0, 4.0, 5.0], 0.9).unwrap(),
            4.6,
            1e-12,
        );
    }
}
