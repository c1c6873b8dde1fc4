//! Fast paths for the two decimal operations every answer is made of: a
//! cross rate (`round_rate(a / b)`) and writing a decimal as text.
//!
//! A 25-year series is ~200,000 of each, and `rust_decimal`'s general
//! division, significant-digit rounding and `Display` dominated its cost.
//! Rates are small: after [`round_rate`] a mantissa has at most 15 digits,
//! so the quotient can be computed exactly in `u128` integer arithmetic.
//! Both functions give exactly what the straightforward `Decimal` code gives
//! (tests compare them over the whole bundled history and random values) and
//! fall back to that code for anything outside the cases they handle.
//! Integers only: no floating point anywhere.

use std::fmt::Write as _;

use rust_decimal::Decimal;

/// Significant digits kept in every computed rate (cross rates, inverses,
/// normalised provider values). Inputs have at most 6–7; 15 leaves the
/// rounding error of a cross rate below 1e-14 relative, far under any
/// currency's minor unit for amounts within the parsing limits.
pub const RATE_SIGNIFICANT_DIGITS: u32 = 15;

/// Rounds a computed rate to [`RATE_SIGNIFICANT_DIGITS`].
pub fn round_rate(r: Decimal) -> Decimal {
    r.round_sf(RATE_SIGNIFICANT_DIGITS).unwrap_or(r).normalize()
}

/// Mantissas at or above this take the general path, which keeps every
/// intermediate product below 10^38 (`u128` holds 3.4 × 10^38).
const FAST_MANTISSA_LIMIT: i128 = 10_000_000_000_000_000; // 10^16

/// `round_rate(n / d)`, i.e. the quotient rounded to
/// [`RATE_SIGNIFICANT_DIGITS`] (half to even) and normalised; `None` when
/// the division fails (zero divisor, overflow).
pub fn div_rate(n: Decimal, d: Decimal) -> Option<Decimal> {
    div_rate_by(n, &Divisor::new(d))
}

/// A divisor prepared once for many [`div_rate_by`] calls (a series
/// divides every currency of a day by the same base rate).
#[derive(Debug, Clone, Copy)]
pub struct Divisor {
    value: Decimal,
    /// The mantissa when the fast path can take it, else 0.
    mantissa: u64,
    digits: i32,
    scale: i32,
}

impl Divisor {
    /// Prepares `d`.
    pub fn new(d: Decimal) -> Divisor {
        let m = d.mantissa();
        let fast = m > 0 && m < FAST_MANTISSA_LIMIT;
        Divisor {
            value: d,
            mantissa: if fast { m as u64 } else { 0 },
            digits: if fast { digits(m as u64) } else { 0 },
            scale: d.scale() as i32,
        }
    }
}

/// [`div_rate`] by a prepared divisor: the same result.
pub fn div_rate_by(n: Decimal, d: &Divisor) -> Option<Decimal> {
    match fast_div_rate(n, d) {
        Some(q) => Some(q),
        None => Some(round_rate(n.checked_div(d.value)?)),
    }
}

/// The exact quotient rounded once to the significant digits, for positive
/// operands with small mantissas; `None` where the general path must decide.
///
/// The reference rounds twice: `Decimal` division keeps 28 decimal places
/// (or ~28 digits), then `round_sf` rounds that. The two roundings can only
/// disagree with one exact rounding when the exact quotient lies within the
/// division's error of a midpoint between two 15-digit values, so such
/// near-ties are handed to the general path.
fn fast_div_rate(n: Decimal, d: &Divisor) -> Option<Decimal> {
    let mn = n.mantissa();
    if mn <= 0 || mn >= FAST_MANTISSA_LIMIT || d.mantissa == 0 {
        return None;
    }
    // Both fit in 54 bits.
    let (mn, md) = (mn as u64, d.mantissa);
    let sf = RATE_SIGNIFICANT_DIGITS as i32;
    // With this k, mn·10^k / md lies in (10^(sf-1), 10^(sf+1)): sf or sf+1
    // integer digits. Mantissas have at most 16 digits, so 0 <= k < 32.
    let mut k = sf - digits(mn) + d.digits;
    if !(0..=31).contains(&k) {
        return None;
    }
    let num = u128::from(mn) * POW10[k as usize];
    let md = u128::from(md);
    // One 128-bit division; the remainder by multiplication (`%` would be
    // a second library call).
    let mut q = num / md;
    let (mut rem, mut div) = (num - q * md, md);
    if q >= POW10[sf as usize] {
        // One digit too many: move it into the remainder.
        rem += (q % 10) * md;
        div *= 10;
        q /= 10;
        k -= 1;
    }
    // The value is q.rem/div × 10^-scale.
    let mut scale = k + n.scale() as i32 - d.scale;
    if !(0..=20).contains(&scale) {
        return None;
    }
    // Distance from the midpoint, in units of div/2: |2·rem − div|. The
    // reference's division error is below 10^(scale−27) of a unit in the
    // last kept digit (and below 10^-10 for quotients of 28 digits);
    // require a margin of ten over that.
    let twice = 2 * rem;
    let distance = twice.abs_diff(div);
    let margin = POW10[(27 - scale).min(10) as usize];
    if distance.checked_mul(margin)? <= div {
        return None;
    }
    // q < 10^15 (+1 after rounding up): fits in a u64.
    let mut q = q as u64;
    if twice > div {
        q += 1;
    }
    // `normalize`, on the u64: strip trailing zeros from the fraction.
    while scale > 0 && q % 10 == 0 {
        q /= 10;
        scale -= 1;
    }
    Some(Decimal::from_i128_with_scale(i128::from(q), scale as u32))
}

/// Powers of ten that fit in a `u128` (10^0 ..= 10^38).
const POW10: [u128; 39] = {
    let mut t = [1u128; 39];
    let mut i = 1;
    while i < 39 {
        t[i] = t[i - 1] * 10;
        i += 1;
    }
    t
};

/// Decimal digits of `x` (> 0).
fn digits(x: u64) -> i32 {
    x.ilog10() as i32 + 1
}

/// Appends `d` exactly as its `Display` writes it (scale kept, no
/// exponent), without going through the formatter machinery.
pub fn write_decimal(out: &mut String, d: Decimal) {
    let mut buf = [0u8; 32];
    match ascii(d, &mut buf) {
        // ASCII pushed as chars: cheaper than validating it as UTF-8.
        Some(i) => buf[i..].iter().for_each(|b| out.push(char::from(*b))),
        None => {
            let _ = write!(out, "{d}");
        }
    }
}

/// [`write_decimal`] into bytes (a body being built), the same text.
pub fn write_decimal_bytes(out: &mut Vec<u8>, d: Decimal) {
    let mut buf = [0u8; 32];
    match ascii(d, &mut buf) {
        Some(i) => out.extend_from_slice(&buf[i..]),
        None => out.extend_from_slice(d.to_string().as_bytes()),
    }
}

/// "00" to "99".
const DIGIT_PAIRS: [u8; 200] = {
    let mut t = [0u8; 200];
    let mut n = 0;
    while n < 100 {
        t[2 * n] = b'0' + (n / 10) as u8;
        t[2 * n + 1] = b'0' + (n % 10) as u8;
        n += 1;
    }
    t
};

/// Writes `d`'s text at the end of `buf` and returns where it starts, or
/// `None` for zero (which can be signed), negatives and mantissas beyond
/// a `u64`: rare on these paths, and left to `Display`.
fn ascii(d: Decimal, buf: &mut [u8; 32]) -> Option<usize> {
    let m = d.mantissa();
    if m <= 0 || m > u64::MAX as i128 {
        return None;
    }
    let mut v = m as u64;
    let scale = d.scale() as usize; // at most 28
    let mut i = buf.len();
    // Digits two at a time from the end: the fraction (`scale` digits),
    // the point, then the integer part (at least a zero). At most 2 + 28
    // bytes, or 20 digits and a point.
    let mut frac = scale;
    while frac >= 2 {
        let k = (v % 100) as usize * 2;
        v /= 100;
        i -= 2;
        buf[i..i + 2].copy_from_slice(&DIGIT_PAIRS[k..k + 2]);
        frac -= 2;
    }
    if frac == 1 {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
    }
    if scale > 0 {
        i -= 1;
        buf[i] = b'.';
    }
    while v >= 100 {
        let k = (v % 100) as usize * 2;
        v /= 100;
        i -= 2;
        buf[i..i + 2].copy_from_slice(&DIGIT_PAIRS[k..k + 2]);
    }
    if v >= 10 {
        let k = v as usize * 2;
        i -= 2;
        buf[i..i + 2].copy_from_slice(&DIGIT_PAIRS[k..k + 2]);
    } else {
        i -= 1;
        buf[i] = b'0' + v as u8;
    }
    Some(i)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn reference(n: Decimal, d: Decimal) -> Option<Decimal> {
        Some(round_rate(n.checked_div(d)?))
    }

    pub(crate) fn same(n: Decimal, d: Decimal) {
        let got = div_rate(n, d);
        let want = reference(n, d);
        assert_eq!(got, want, "{n} / {d}");
        // Equal values can differ in scale; the text must not.
        assert_eq!(
            got.map(|x| x.to_string()),
            want.map(|x| x.to_string()),
            "{n} / {d}"
        );
    }

    pub(crate) fn text(d: Decimal) -> String {
        let mut s = String::new();
        write_decimal(&mut s, d);
        let mut b = Vec::new();
        write_decimal_bytes(&mut b, d);
        assert_eq!(s.as_bytes(), &b[..], "{d}");
        s
    }

    /// A small deterministic generator (xorshift), to avoid a dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn random_operands_match_the_reference() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..200_000 {
            let digits_n = 1 + rng.next() % 17;
            let digits_d = 1 + rng.next() % 17;
            let n = (rng.next() % 10u64.pow(digits_n as u32)) as i64 + 1;
            let d = (rng.next() % 10u64.pow(digits_d as u32)) as i64 + 1;
            let sn = (rng.next() % 20) as u32;
            let sd = (rng.next() % 20) as u32;
            let (n, d) = (Decimal::new(n, sn), Decimal::new(d, sd));
            same(n, d);
            assert_eq!(text(n), n.to_string());
        }
    }

    #[test]
    fn ties_and_edges_match_the_reference() {
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        // Exact midpoints at the 16th digit, either side of even.
        same(d("1.0000000000000005"), d("1"));
        same(d("1.0000000000000015"), d("1"));
        same(d("2.000000000000001"), d("2"));
        same(d("3"), d("2"));
        same(d("1"), d("3"));
        same(d("2"), d("3"));
        same(d("100"), d("0.0001"));
        same(d("0.000001"), d("123456"));
        same(d("7"), d("0"));
        same(d("-7"), d("3"));
        same(d("0"), d("3"));
        same(Decimal::MAX, d("0.5"));
        for x in ["0", "-0", "0.00", "-1.5", "1.10", "0.05", "120", "1e-20"] {
            let v = if x == "1e-20" {
                Decimal::new(1, 20)
            } else {
                d(x)
            };
            assert_eq!(text(v), v.to_string(), "{x}");
        }
        assert_eq!(text(Decimal::MAX), Decimal::MAX.to_string());
    }
}
