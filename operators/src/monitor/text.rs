//! Numbers in alert messages: five significant digits, without the standard library's
//! exact-mode float formatting where a shortcut gives the same text.

/// Five significant digits for messages: plain notation for ordinary magnitudes, scientific
/// for very small or large ones (a source pressure of 2.3e-5 mTorr stays readable).
pub(super) struct Sig(pub(super) f64);

impl std::fmt::Display for Sig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = self.0;
        let a = v.abs();
        if a == 0.0 {
            write!(f, "{v:.4}")
        } else if (1e-3..1e6).contains(&a) {
            let decimals = (4 - a.log10().floor() as i32).clamp(0, 7) as usize;
            let mut buf = [0u8; 24];
            match fixed(v, decimals, &mut buf) {
                Some(text) => f.write_str(text),
                None => write!(f, "{v:.decimals$}"),
            }
        } else {
            write!(f, "{v:.4e}")
        }
    }
}

/// `format!("{v:.decimals$}")` for `|v|` times `10^decimals` below 2^40, without the
/// standard library's exact-mode float formatting (a few hundred nanoseconds, once or
/// twice an alert); `None` where the shortcut cannot promise the same text.
///
/// The standard library rounds the exact value of `v` to `decimals` places, ties to even.
/// `v * 10^decimals` in floating point is within half an ulp of the exact product (the
/// power of ten is exact), an ulp being at most 2^-12 below 2^40, so unless the product
/// lies within 2^-10 of a tie, rounding it gives the same integer as rounding the exact
/// product; near a tie the standard library decides.
pub(super) fn fixed(v: f64, decimals: usize, buf: &mut [u8; 24]) -> Option<&str> {
    const POW10: [f64; 8] = [1.0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7];
    const LIMIT: f64 = (1u64 << 40) as f64;
    let scaled = v.abs() * *POW10.get(decimals)?;
    if scaled >= LIMIT {
        return None;
    }
    let frac = scaled - scaled.trunc();
    if (frac - 0.5).abs() <= 1.0 / 1024.0 {
        return None;
    }
    let mut n = scaled.round() as u64;
    // Digits from the right: the decimals, the point, the integer part, the sign.
    let mut at = buf.len();
    let mut put = |buf: &mut [u8; 24], b: u8| {
        at -= 1;
        buf[at] = b;
    };
    for _ in 0..decimals {
        put(buf, b'0' + (n % 10) as u8);
        n /= 10;
    }
    if decimals > 0 {
        put(buf, b'.');
    }
    loop {
        put(buf, b'0' + (n % 10) as u8);
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v.is_sign_negative() {
        put(buf, b'-');
    }
    std::str::from_utf8(&buf[at..]).ok()
}
