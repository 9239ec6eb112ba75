//! The fast path of [`super::decode_telemetry_json_ref`]: a scanner for the documents
//! gateways actually send, which borrows every string from the input.
//!
//! It accepts a subset of what the serde path accepts and, on that subset, yields the same
//! sample: an object with the telemetry fields and any unknown fields, strings without
//! escapes, measurement values that are numbers, `null` or the non-finite spellings. For
//! anything else (an escape, a duplicate, a missing field, a bad value, bare `NaN`, invalid
//! JSON) it returns `None` and the caller decodes with serde, which then either succeeds
//! the same way or produces the error message. So this path never decides that a document
//! is bad. The tests below check the agreement against serde_json on generated and mutated
//! documents.

use std::borrow::Cow;

use crate::telemetry::{TelemetryRef, ToolType, measurement_values::parse_special};

/// Deeper nesting in an unknown field is left to serde (whose own limit is 128).
const MAX_DEPTH: u32 = 64;

/// Decodes `bytes` if it is a document of the fast subset; `None` otherwise.
pub(super) fn parse(bytes: &[u8]) -> Option<TelemetryRef<'_>> {
    // One validation of the whole document (SIMD: about 160 instructions for a 330-byte
    // document against the standard library's 270); every slice taken below starts and
    // ends next to an ASCII delimiter, so it is valid UTF-8 too.
    let text = simdutf8::basic::from_utf8(bytes).ok()?;
    let mut s = Scanner { text, bytes, at: 0 };
    let doc = s.document()?;
    s.skip_ws();
    (s.at == bytes.len()).then_some(doc)
}

/// The length of the string content at the start of `rest`: the index of its first `"`,
/// `\\` or control character. Looks at eight bytes at a time: a byte equal to `"` or `\\`
/// becomes zero after an XOR, and `(x - 0x01..) & !x & 0x80..` marks the zero bytes (and
/// `(x - 0x20..) & !x & 0x80..` those below 0x20); a mark above a marked byte can be
/// spurious, the lowest one never is.
#[inline]
fn string_end(rest: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_le_bytes([0x80; 8]);
    let zero = |x: u64| x.wrapping_sub(ONES) & !x;
    let mut chunks = rest.chunks_exact(8);
    let mut at = 0;
    for chunk in chunks.by_ref() {
        let w = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
        let marks = (zero(w ^ (ONES * u64::from(b'"')))
            | zero(w ^ (ONES * u64::from(b'\\')))
            | (w.wrapping_sub(ONES * 0x20) & !w))
            & HIGH;
        if marks != 0 {
            return Some(at + marks.trailing_zeros() as usize / 8);
        }
        at += 8;
    }
    let tail = chunks.remainder();
    tail.iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .map(|i| at + i)
}

/// The value of eight ASCII digits, or `None` if any of the eight bytes is not a digit.
/// SWAR: a byte is a digit when its high nibble is 3 and adding 6 does not carry into the
/// high nibble; then three multiplications combine the digits pairwise (tens, hundreds,
/// then ten-thousands), the first byte being the most significant digit.
#[inline]
fn eight_digits(chunk: &[u8]) -> Option<u64> {
    const HIGH_NIBBLES: u64 = u64::from_le_bytes([0xF0; 8]);
    let w = u64::from_le_bytes(chunk.try_into().ok()?);
    let digits =
        (w & HIGH_NIBBLES) | ((w.wrapping_add(u64::from_le_bytes([0x06; 8])) & HIGH_NIBBLES) >> 4);
    if digits != u64::from_le_bytes([0x33; 8]) {
        return None;
    }
    let w = w - u64::from_le_bytes([b'0'; 8]);
    // Each 16-bit lane: 10 * first + second.
    let w = (w * 10 + (w >> 8)) & 0x00FF_00FF_00FF_00FF;
    // Each 32-bit lane: 100 * first pair + second pair.
    let w = (w * 100 + (w >> 16)) & 0x0000_FFFF_0000_FFFF;
    // 10,000 * first four + last four.
    Some((w * 10_000 + (w >> 32)) & 0xFFFF_FFFF)
}

/// `mantissa * 10^scale` rounded to the nearest `f64` (ties to even), for
/// `2^53 < mantissa < 2^64` and `|scale| <= 22`: exact integer arithmetic on `u128`;
/// `None` for a product of 2^128 or more (left to `f64::from_str`). A negative scale first
/// tries [`reciprocal_decimal`], a multiplication, and divides only where that cannot
/// decide.
///
/// A positive scale gives an integer, whose conversion rounds correctly. For a
/// negative one the mantissa is shifted to the top of a `u128` and divided by `10^-scale`
/// (below 2^74): 53 bits of the quotient (of at least 54) make the result, the bits below
/// them and the remainder decide the rounding. The result is a normal number (at least
/// 2^53 / 10^22), so no subnormal or overflow case arises.
fn wide_decimal(mantissa: u64, scale: i32) -> Option<f64> {
    /// `10^i` for `i` in `0..=22`.
    const POW10: [u128; 23] = {
        let mut table = [1u128; 23];
        let mut i = 1;
        while i < table.len() {
            table[i] = table[i - 1] * 10;
            i += 1;
        }
        table
    };
    debug_assert!(mantissa > 1 << 53 && scale.abs() <= 22);
    let power = POW10[scale.unsigned_abs() as usize];
    if scale >= 0 {
        return u128::from(mantissa).checked_mul(power).map(|v| v as f64);
    }
    if let Some(v) = reciprocal_decimal(mantissa, scale.unsigned_abs()) {
        return Some(v);
    }
    let shift = 64 + mantissa.leading_zeros();
    let numerator = u128::from(mantissa) << shift;
    let quotient = numerator / power;
    let exact = quotient * power == numerator;
    let dropped_bits = (128 - quotient.leading_zeros()) - 53;
    let mut result = (quotient >> dropped_bits) as u64;
    let dropped = quotient & ((1 << dropped_bits) - 1);
    let half = 1u128 << (dropped_bits - 1);
    if dropped > half || (dropped == half && (!exact || result & 1 == 1)) {
        result += 1;
    }
    // result * 2^(dropped_bits - shift), result in [2^52, 2^53] (2^53 is exact as f64).
    let exponent = dropped_bits as i32 - shift as i32;
    Some(result as f64 * f64::from_bits(((1023 + exponent) as u64) << 52))
}

/// For `k` in `1..=22`: `floor(2^(127 + z) / 5^k) + 1`, where `z` is the bit length of
/// `5^k` (so the value lies in `(2^127, 2^128)`), and `z`. An over-estimate of `2^(127 + z)
/// / 5^k` by less than one (the quotient is never an integer). Index 0 is unused.
const RECIPROCALS_OF_FIVE: [(u128, u32); 23] = {
    let mut table = [(0u128, 0u32); 23];
    let mut k = 1;
    let mut five = 1u64;
    while k < table.len() {
        five *= 5;
        let z = 64 - five.leading_zeros();
        // 2^(127 + z) / 5^k in two steps of 64 bits (5^22 < 2^52, so nothing overflows).
        let top = 1u128 << (63 + z);
        let high = top / five as u128;
        let low = ((top % five as u128) << 64) / five as u128;
        table[k] = ((high << 64) + low + 1, z);
        k += 1;
    }
    table
};

/// `mantissa / 10^k` rounded to the nearest `f64`, for `2^53 < mantissa < 2^64` and `k` in
/// `1..=22`, by multiplying with a 128-bit reciprocal of `5^k` instead of dividing by `10^k`
/// (the approach of Eisel and Lemire's number parsing); `None` when the product lands on
/// the half-way point of its last place, which [`wide_decimal`] then decides by division
/// (every exact tie, possible only when `5^k` divides the mantissa, and about one other
/// case in 2^74).
///
/// With `w` the mantissa shifted to 64 significant bits and `(t, z)` the table entry,
/// `w * t` (192 bits, computed exactly) over-estimates the exact `w * 2^(127 + z) / 5^k` by
/// less than `w < 2^64`, so its top 128 bits `p` are within one of the exact value's (as a
/// real number on the same scale). Call `r` the `l` bits of `p` below its top 53 and `h`
/// half their range. If `r > h`, the exact bits lie above `r - 1 >= h`: round up (should
/// they reach the next place, the result is the same). If `r < h`, they lie below
/// `r + 1 <= h`: round down (should they fall below zero, the nearest value is still the
/// top 53 bits of `p`). If `r == h`, the exact value may lie on either side.
fn reciprocal_decimal(mantissa: u64, k: u32) -> Option<f64> {
    let (t, z) = *RECIPROCALS_OF_FIVE.get(k as usize)?;
    let lz = mantissa.leading_zeros();
    let w = u128::from(mantissa << lz);
    let high = w * (t >> 64);
    let low = w * (t & u128::from(u64::MAX));
    let p = high.checked_add(low >> 64)?;
    // p is in [2^126, 2^128): the top set bit is 127 or 126.
    let top_bit = 127 - p.leading_zeros();
    let l = top_bit - 52;
    let rest = p & ((1u128 << l) - 1);
    let half = 1u128 << (l - 1);
    if rest == half {
        return None;
    }
    let mut result = (p >> l) as u64;
    if rest > half {
        result += 1;
    }
    // The exact value is w * 2^(127 + z) / 5^k = mantissa * 10^-k * 2^(k + lz + 127 + z),
    // and p holds it divided by 2^64: the result's unit is 2^(l + 64 - k - lz - 127 - z).
    let exponent = l as i32 + 64 - (k + lz + 127 + z) as i32;
    // result * 2^exponent, result in [2^52, 2^53] (2^53 is exact as f64), a normal number.
    Some(result as f64 * f64::from_bits(((1023 + exponent) as u64) << 52))
}

/// The members of a telemetry object, and any other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    ToolId,
    ToolType,
    RecipeId,
    LotId,
    WaferId,
    EventTime,
    Measurements,
    Other,
}

/// The fields' names, each with its closing quote.
const TOOL_ID: &[u8; 8] = b"tool_id\"";
const TOOL_TYPE: &[u8; 10] = b"tool_type\"";
const RECIPE_ID: &[u8; 10] = b"recipe_id\"";
const LOT_ID: &[u8; 7] = b"lot_id\"";
const WAFER_ID: &[u8; 9] = b"wafer_id\"";
const EVENT_TIME: &[u8; 11] = b"event_time\"";
const MEASUREMENTS: &[u8; 13] = b"measurements\"";

/// Every field with its name (for names [`Scanner::field_name`] scans as strings).
const FIELDS: [(&[u8], Field); 7] = [
    (TOOL_ID, Field::ToolId),
    (TOOL_TYPE, Field::ToolType),
    (RECIPE_ID, Field::RecipeId),
    (LOT_ID, Field::LotId),
    (WAFER_ID, Field::WaferId),
    (EVENT_TIME, Field::EventTime),
    (MEASUREMENTS, Field::Measurements),
];

/// `field` and the length of its `name` when `rest` starts with it. The length is a
/// constant, so the compare is a word compare or two, not a call to `memcmp`.
#[inline(always)]
fn named<const N: usize>(rest: &[u8], name: &[u8; N], field: Field) -> Option<(usize, Field)> {
    (rest.first_chunk::<N>() == Some(name)).then_some((N, field))
}

/// A number token (see [`Scanner::number`]).
struct Number<'a> {
    text: &'a str,
    integer: bool,
    exact: Option<f64>,
}

struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Scanner<'a> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    /// The text from byte `from` to byte `to`, where each of the two is next to an ASCII
    /// byte (its start or its end): a character boundary, as an ASCII byte is never part
    /// of a longer UTF-8 sequence, so the bounds need no check of their own.
    #[inline]
    fn slice(&self, from: usize, to: usize) -> &'a str {
        debug_assert!(self.text.is_char_boundary(from) && self.text.is_char_boundary(to));
        assert!(from <= to && to <= self.text.len());
        // SAFETY: `from <= to <= len` (asserted), and both are character boundaries (see
        // above).
        unsafe { self.text.get_unchecked(from..to) }
    }

    #[inline]
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    /// Skips whitespace, then consumes `byte`.
    #[inline]
    fn expect(&mut self, byte: u8) -> Option<()> {
        self.skip_ws();
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// Right after an opening bracket: consumes `close` if the container is empty.
    #[inline]
    fn closes(&mut self, close: u8) -> bool {
        self.skip_ws();
        let empty = self.peek() == Some(close);
        self.at += usize::from(empty);
        empty
    }

    /// After a member: `true` at `,` (another follows), `false` at `}`.
    #[inline]
    fn more(&mut self) -> Option<bool> {
        self.skip_ws();
        let b = self.peek()?;
        self.at += 1;
        match b {
            b',' => Some(true),
            b'}' => Some(false),
            _ => None,
        }
    }

    /// A string without escapes, after optional whitespace.
    #[inline]
    fn string(&mut self) -> Option<&'a str> {
        self.expect(b'"')?;
        let start = self.at;
        let len = string_end(&self.bytes[start..])?;
        if self.bytes[start + len] != b'"' {
            return None;
        }
        self.at = start + len + 1;
        Some(self.slice(start, start + len))
    }

    /// A member name of the telemetry object. The fields' names are compared in place,
    /// closing quote included (one or two word compares after a switch on the first
    /// letter); other names are scanned as strings.
    #[inline]
    fn field_name(&mut self) -> Option<Field> {
        self.expect(b'"')?;
        let rest = &self.bytes[self.at..];
        let known = match rest.first()? {
            b't' => named(rest, TOOL_ID, Field::ToolId)
                .or_else(|| named(rest, TOOL_TYPE, Field::ToolType)),
            b'r' => named(rest, RECIPE_ID, Field::RecipeId),
            b'l' => named(rest, LOT_ID, Field::LotId),
            b'w' => named(rest, WAFER_ID, Field::WaferId),
            b'e' => named(rest, EVENT_TIME, Field::EventTime),
            b'm' => named(rest, MEASUREMENTS, Field::Measurements),
            _ => None,
        };
        if let Some((len, field)) = known {
            self.at += len;
            return Some(field);
        }
        // Back to the opening quote for the general scan.
        self.at -= 1;
        let name = self.string()?;
        Some(
            FIELDS
                .iter()
                .find(|(n, _)| n.strip_suffix(b"\"") == Some(name.as_bytes()))
                .map_or(Field::Other, |&(_, f)| f),
        )
    }

    /// `true`, `false` or `null` spelled out (the caller peeked the first letter).
    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.at + word.len();
        (self.bytes.get(self.at..end)? == word).then(|| self.at = end)
    }

    /// A number in JSON's grammar: its text, whether it is an integer (no fraction, no
    /// exponent), and its value when it has at most 19 significant digits and a power of
    /// ten of at most 10^22 either way: Clinger's fast path for a mantissa of at most 2^53
    /// (one correctly rounded IEEE operation on two exact operands), [`wide_decimal`] for
    /// larger ones (full-precision values, 17 digits). Other numbers are left to
    /// `f64::from_str`.
    #[inline]
    fn number(&mut self) -> Option<Number<'a>> {
        /// The powers of ten an `f64` holds exactly.
        const POW10: [f64; 23] = [
            1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
            1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
        ];
        let b = self.bytes;
        let start = self.at;
        let mut i = start;
        let negative = b.get(i) == Some(&b'-');
        i += usize::from(negative);
        // Significant digits go to `mantissa` while it stays exact (19 digits fit a u64).
        let (mut mantissa, mut digits, mut scale) = (0u64, 0u32, 0i32);
        let mut digit_run = |i: &mut usize, fraction: bool| {
            let from = *i;
            // Eight digits at a time while they all still fit the mantissa (looking at the
            // eighth byte first keeps short runs, the usual case, on the byte loop cheaply).
            while digits <= 11 {
                let Some(chunk) = b.get(*i..*i + 8) else {
                    break;
                };
                if !chunk[7].is_ascii_digit() {
                    break;
                }
                let Some(value) = eight_digits(chunk) else {
                    break;
                };
                mantissa = mantissa * 100_000_000 + value;
                scale -= 8 * i32::from(fraction);
                digits += 8;
                *i += 8;
            }
            while let Some(&d @ b'0'..=b'9') = b.get(*i) {
                if digits < 19 {
                    mantissa = mantissa * 10 + u64::from(d - b'0');
                    scale -= i32::from(fraction);
                }
                digits = digits.saturating_add(1);
                *i += 1;
            }
            *i - from
        };
        let int_start = i;
        let int_len = digit_run(&mut i, false);
        if int_len == 0 || (b[int_start] == b'0' && int_len > 1) {
            return None;
        }
        let mut integer = true;
        if b.get(i) == Some(&b'.') {
            i += 1;
            if digit_run(&mut i, true) == 0 {
                return None;
            }
            integer = false;
        }
        if let Some(b'e' | b'E') = b.get(i) {
            i += 1;
            let exp_negative = b.get(i) == Some(&b'-');
            if let Some(b'+' | b'-') = b.get(i) {
                i += 1;
            }
            let (from, mut exp) = (i, 0i32);
            while let Some(&d @ b'0'..=b'9') = b.get(i) {
                exp = (exp * 10 + i32::from(d - b'0')).min(100_000);
                i += 1;
            }
            if i == from {
                return None;
            }
            scale += if exp_negative { -exp } else { exp };
            integer = false;
        }
        self.at = i;
        let exact = if digits > 19 || scale.abs() > 22 {
            None
        } else if mantissa <= 1 << 53 {
            let m = mantissa as f64;
            Some(if scale >= 0 {
                m * POW10[scale as usize]
            } else {
                m / POW10[scale.unsigned_abs() as usize]
            })
        } else {
            wide_decimal(mantissa, scale)
        }
        .map(|v| if negative { -v } else { v });
        Some(Number {
            text: self.slice(start, i),
            integer,
            exact,
        })
    }

    /// Skips any value of the subset (an unknown field).
    fn skip_value(&mut self, depth: u32) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.skip_ws();
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' => {
                self.at += 1;
                if self.closes(b'}') {
                    return Some(());
                }
                loop {
                    self.string()?;
                    self.expect(b':')?;
                    self.skip_value(depth + 1)?;
                    if !self.more()? {
                        return Some(());
                    }
                }
            }
            b'[' => {
                self.at += 1;
                if self.closes(b']') {
                    return Some(());
                }
                loop {
                    self.skip_value(depth + 1)?;
                    self.skip_ws();
                    let b = self.peek()?;
                    self.at += 1;
                    match b {
                        b',' => {}
                        b']' => return Some(()),
                        _ => return None,
                    }
                }
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            // serde checks an ignored number's grammar, not its range.
            _ => self.number().map(drop),
        }
    }

    /// A string or `null` (`lot_id`, `wafer_id`).
    fn optional_string(&mut self) -> Option<Option<&'a str>> {
        self.skip_ws();
        if self.peek()? == b'n' {
            self.literal(b"null")?;
            return Some(None);
        }
        self.string().map(Some)
    }

    /// An integer that fits an `i64` (`event_time`). serde_json reads `-0` as the float
    /// -0.0, which is not an `i64`.
    fn int64(&mut self) -> Option<i64> {
        self.skip_ws();
        match self.number()? {
            Number {
                text,
                integer: true,
                ..
            } if text != "-0" => text.parse().ok(),
            _ => None,
        }
    }

    /// One measured value: a number, `null` (NaN) or a non-finite spelling.
    #[inline]
    fn value(&mut self) -> Option<f64> {
        self.skip_ws();
        match self.peek()? {
            b'"' => parse_special(self.string()?),
            b'n' => self.literal(b"null").map(|()| f64::NAN),
            _ => match self.number()? {
                Number { exact: Some(v), .. } => Some(v),
                Number { text, .. } => text.parse::<f64>().ok().filter(|v| v.is_finite()),
            },
        }
    }

    fn measurements(&mut self) -> Option<Vec<(Cow<'a, str>, f64)>> {
        let mut out = Vec::with_capacity(8);
        self.expect(b'{')?;
        if self.closes(b'}') {
            return Some(out);
        }
        loop {
            let name = self.string()?;
            self.expect(b':')?;
            out.push((Cow::Borrowed(name), self.value()?));
            if !self.more()? {
                return Some(out);
            }
        }
    }

    fn document(&mut self) -> Option<TelemetryRef<'a>> {
        let mut tool_id = None;
        let mut tool_type = None;
        let mut recipe_id = None;
        let mut lot_id = None;
        let mut wafer_id = None;
        let mut event_time = None;
        let mut measurements = None;
        /// Stores a field's value, or gives up on a duplicate (serde reports it).
        fn once<T>(slot: &mut Option<T>, value: Option<T>) -> Option<()> {
            if slot.is_some() {
                return None;
            }
            *slot = Some(value?);
            Some(())
        }
        self.expect(b'{')?;
        loop {
            let field = self.field_name()?;
            self.expect(b':')?;
            match field {
                Field::ToolId => once(&mut tool_id, self.string())?,
                Field::ToolType => {
                    let t = match self.string()? {
                        "ion_implant" => Some(ToolType::IonImplant),
                        "rtp" => Some(ToolType::Rtp),
                        _ => None,
                    };
                    once(&mut tool_type, t)?
                }
                Field::RecipeId => once(&mut recipe_id, self.string())?,
                Field::LotId => once(&mut lot_id, self.optional_string())?,
                Field::WaferId => once(&mut wafer_id, self.optional_string())?,
                Field::EventTime => once(&mut event_time, self.int64())?,
                Field::Measurements => once(&mut measurements, self.measurements())?,
                Field::Other => self.skip_value(0)?,
            }
            if !self.more()? {
                break;
            }
        }
        TelemetryRef::new(
            Cow::Borrowed(tool_id?),
            tool_type?,
            Cow::Borrowed(recipe_id?),
            lot_id.flatten().map(Cow::Borrowed),
            wafer_id.flatten().map(Cow::Borrowed),
            event_time?,
            measurements?,
        )
    }
}

#[cfg(test)]
mod tests;
