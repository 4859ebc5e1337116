//! Shortest round-trip text for `f32`: the largest CPU cost of an export.
//!
//! A 768-d embedding is 768 floats per row, so this runs billions of times per collection. The
//! output is the shortest decimal that reads back (Rust's `str::parse::<f32>`, C's `strtof`,
//! PostgreSQL's `float4in`) to the identical bits; among the shortest, the one nearest the exact
//! value, ties to an even last digit, which is also the digit string `ryu` picks. An exhaustive
//! test over all 2^32 bit patterns holds it to that (`scripts/check-f32-all.sh`), both ways a
//! server reads `real`: straight to f32 (PostgreSQL 12 and later) and through f64 then a cast to
//! f32 (`strtod` in the `float4in` of PostgreSQL before 12, so of Greenplum 6 and AnalyticDB 6).
//! Rounding twice lands on the neighbouring f32 for exactly one shortest text among all 2^32
//! patterns (and its negative): `7.038531e-26`, which is therefore written one digit longer
//! ([`TWICE_ROUNDED`]).
//!
//! Two halves:
//! - [`to_decimal`] is Schubfach (R. Giulietti, "The Schubfach way to render doubles", 2020) for
//!   binary32: one table lookup and three 64×32-bit products give the shortest digits, with no
//!   digit-removal loop (Ryu's main cost).
//! - The digit writer turns the ≤ 9 digits into ASCII with a few multiplications on a single
//!   register (SWAR), reads the leading and trailing zero counts off that register, and stores
//!   whole 16-byte words straight into the caller's buffer instead of going through a
//!   per-call stack buffer and a copy. It writes into the buffer's spare capacity, so nothing
//!   is zero-filled first: 154 instructions per float, against 171 when the list's worst case
//!   was `resize`d with zeros before writing (`scripts/callgrind-f32.sh`, 2026-12-06; whole
//!   export user CPU 0.93–1.04×, median 0.95, over 3 interleaved rounds). Values from 1e-5 to 1e9 are written in plain decimal
//!   (`0.0123`, `12.5`, `100`), which is both the shortest spelling for embedding values and the
//!   cheapest to lay out; others get an exponent (`1.5e-7`, `3.4028235e38`).
//!
//! Non-finite values use PostgreSQL's spellings (`NaN`, `Infinity`, `-Infinity`), which `real`
//! and `real[]` accept; `-0.0` is written `-0` so the sign survives.
//!
//! Why not `ryu`: measured in the row path, a whole export (100k × 768 from a genuine Qdrant)
//! spent 1.36–1.47× less user CPU with this writer than with `ryu` in three interleaved runs,
//! and callgrind counted 168 instructions per float against `ryu`'s 310. Float text is most of
//! an export's own CPU (62 % of its instructions with this writer, 75 % with `ryu`), so that is
//! most of what export can gain; docs/benchmarks.md has the figures.
//!
//! Why not `zmij` (1.0.23, dtolnay's port of Żmij, Schubfach-based too), measured 2026-12-06 on
//! the 2-core machine, release builds: it is slower here in every measure.
//! - Whole export of 100k × 768 from a genuine Qdrant 1.18.3, with zmij in the row path
//!   (PostgreSQL's spellings of NaN, ±Infinity and -0 and the twice-rounded text kept around
//!   it) against this writer, interleaved A B A B, user CPU of our process: zmij took 1.13–1.47×
//!   this writer's CPU over 15 rounds in three runs of five (medians 1.27, 1.30, 1.28; this
//!   writer 1.80–2.30 s, zmij 2.26–2.69 s; `scripts/bench-export-ab.sh`).
//! - callgrind, the row path (`scripts/callgrind-f32.sh`: 768-d rows of N(0, 0.05²) with one
//!   value in 16 from 1e-9 to 1e6): 171 instructions per float for this writer (154 since it
//!   stopped zero-filling, above), 208 for zmij, 304 for `ryu`.
//! - criterion (`f32_768` in `benches/encode.rs`): zmij 18.7–19.0 µs a row, this writer
//!   7.7–8.0 µs, `ryu` 10.8–11.3 µs. Embedding values are fractions (`0.0xxx`), which zmij
//!   lays out by moving its digits and filling in zeros with variable-length copies (libc
//!   `memmove` and `memset` calls in the callgrind profile), more costly in time than its
//!   instruction count says.
//!
//! Its text also differs in form, all of which Rust's parser reads: `1.0` for integers, plain
//! decimals from 1e-6 to below 1e13 (`0.0000012`, `1000000000.0`), `e+` for positive exponents
//! (`3.4028235e+38`), `0.0`/`-0.0`, and `inf`/`-inf`.

use std::mem::MaybeUninit;

/// The longest text one `f32` can need: sign, 9 digits, point, `e`, exponent sign, 2 digits.
pub const MAX_F32_LEN: usize = 16;

/// Bytes the writer may store to past the start of one value. It writes whole 16-byte words at
/// offsets up to 22; bytes past the value's end are scratch that the next value overwrites or
/// the final `truncate` drops.
const WINDOW: usize = 40;

/// The bits (sign cleared) of the one f32 whose shortest text, `7.038531e-26`, reads back as
/// its neighbour `7.0385313e-26` when read as f64 and then cast to f32 — as PostgreSQL before
/// 12 reads `real` (the case PostgreSQL 12 switched `float4in` to `strtof` for). Found by the
/// exhaustive test; [`TWICE_ROUNDED_DIGITS`] reads back right both ways.
const TWICE_ROUNDED: u32 = 0x15ae_43fd;
/// `7.0385307e-26` as (digits, exponent of the last digit).
const TWICE_ROUNDED_DIGITS: (u32, i32) = (70_385_307, -33);

/// Where one value is written: bytes of the output's spare capacity, uninitialised until
/// written. The writer only stores into it, and every byte of a value's text is stored.
type Window = [MaybeUninit<u8>; WINDOW];

/// Appends the shortest round-trip text of `v` to `out`.
pub fn write_f32(out: &mut Vec<u8>, v: f32) {
    out.reserve(WINDOW);
    let len = format(window(out.spare_capacity_mut(), 0), 0, v);
    // SAFETY: `format` stored every byte of the `len` it returns, within the reserved spare
    // capacity.
    unsafe { out.set_len(out.len() + len) };
}

/// Appends `values` as shortest round-trip texts separated by commas: the vector hot path.
///
/// The buffer is reserved once for the whole list and written in its spare capacity, so each
/// value costs one bounds check, no capacity check, and no zero-filling first (that `resize`
/// was 17 of 171 instructions per float: docs/benchmarks.md).
pub fn write_f32_list(out: &mut Vec<u8>, values: &[f32]) {
    out.reserve(values.len() * (MAX_F32_LEN + 1) + WINDOW);
    let spare = out.spare_capacity_mut();
    let mut pos = 0;
    let mut rest = values.iter();
    if let Some(&first) = rest.next() {
        pos += format(window(spare, pos), 0, first);
    }
    for &v in rest {
        let w = window(spare, pos);
        w[0].write(b',');
        pos += format(w, 1, v);
    }
    // SAFETY: every byte of `[0, pos)` of the spare capacity was stored: each value's comma and
    // text, back to back.
    unsafe { out.set_len(out.len() + pos) };
}

/// The `WINDOW` bytes of `spare` starting at `pos`; callers have reserved them.
#[inline(always)]
fn window(spare: &mut [MaybeUninit<u8>], pos: usize) -> &mut Window {
    spare[pos..]
        .first_chunk_mut::<WINDOW>()
        .expect("callers reserve WINDOW bytes past every value they start")
}

/// Bits of the smallest and just past the largest magnitude the fast path writes: every `f32`
/// in [1e-5, 1) has a shortest decimal in [1e-5, 1), which `write_fraction` lays out.
const FRACTION_LO: u32 = 1e-5f32.to_bits();
const FRACTION_HI: u32 = 1f32.to_bits();

/// Writes `v` at `w[at..]` (`at` is a constant 0 or 1 at every call); returns the end.
#[inline(always)]
fn format(w: &mut Window, at: usize, v: f32) -> usize {
    let bits = v.to_bits();
    let abs = bits & 0x7fff_ffff;
    // The sign is always stored and kept only for negative values: no branch on it.
    let neg = bits >> 31 != 0;
    w[at].write(b'-');
    if abs.wrapping_sub(FRACTION_LO) < FRACTION_HI - FRACTION_LO {
        let o = at + usize::from(neg);
        let (digits, exp) = to_decimal(abs);
        // exp is in −13..=−7 here; the mask lets the compiler bound the store offsets.
        return o + write_fraction(w, o, digits, exp.unsigned_abs() as usize & 15);
    }
    format_other(w, at, neg, abs)
}

/// Every value outside [1e-5, 1) in magnitude.
#[inline(never)]
fn format_other(w: &mut Window, at: usize, neg: bool, abs: u32) -> usize {
    let o = at + usize::from(neg);
    if abs == 0 {
        w[o].write(b'0');
        return o + 1;
    }
    if abs >= 0x7f80_0000 {
        return at + write_non_finite(w, at, abs > 0x7f80_0000, neg);
    }
    let (digits, exp) = if abs == TWICE_ROUNDED {
        TWICE_ROUNDED_DIGITS
    } else {
        to_decimal(abs)
    };
    write_general(w, o, digits, exp)
}

#[cold]
fn write_non_finite(w: &mut Window, at: usize, nan: bool, neg: bool) -> usize {
    let text: &[u8] = match (nan, neg) {
        (true, _) => b"NaN",
        (false, false) => b"Infinity",
        (false, true) => b"-Infinity",
    };
    w[at..at + text.len()].write_copy_of_slice(text);
    text.len()
}

/// `g[k + 31]` = ⌈10^k / 2^r⌉ with `r` chosen so that 2^63 ≤ g < 2^64, for every `k` binary32
/// needs (−31..=45). Generated with exact rational arithmetic.
static POW10: [u64; 77] = [
    0x81CEB32C4B43FCF5,
    0xA2425FF75E14FC32,
    0xCAD2F7F5359A3B3F,
    0xFD87B5F28300CA0E,
    0x9E74D1B791E07E49,
    0xC612062576589DDB,
    0xF79687AED3EEC552,
    0x9ABE14CD44753B53,
    0xC16D9A0095928A28,
    0xF1C90080BAF72CB2,
    0x971DA05074DA7BEF,
    0xBCE5086492111AEB,
    0xEC1E4A7DB69561A6,
    0x9392EE8E921D5D08,
    0xB877AA3236A4B44A,
    0xE69594BEC44DE15C,
    0x901D7CF73AB0ACDA,
    0xB424DC35095CD810,
    0xE12E13424BB40E14,
    0x8CBCCC096F5088CC,
    0xAFEBFF0BCB24AAFF,
    0xDBE6FECEBDEDD5BF,
    0x89705F4136B4A598,
    0xABCC77118461CEFD,
    0xD6BF94D5E57A42BD,
    0x8637BD05AF6C69B6,
    0xA7C5AC471B478424,
    0xD1B71758E219652C,
    0x83126E978D4FDF3C,
    0xA3D70A3D70A3D70B,
    0xCCCCCCCCCCCCCCCD,
    0x8000000000000000,
    0xA000000000000000,
    0xC800000000000000,
    0xFA00000000000000,
    0x9C40000000000000,
    0xC350000000000000,
    0xF424000000000000,
    0x9896800000000000,
    0xBEBC200000000000,
    0xEE6B280000000000,
    0x9502F90000000000,
    0xBA43B74000000000,
    0xE8D4A51000000000,
    0x9184E72A00000000,
    0xB5E620F480000000,
    0xE35FA931A0000000,
    0x8E1BC9BF04000000,
    0xB1A2BC2EC5000000,
    0xDE0B6B3A76400000,
    0x8AC7230489E80000,
    0xAD78EBC5AC620000,
    0xD8D726B7177A8000,
    0x878678326EAC9000,
    0xA968163F0A57B400,
    0xD3C21BCECCEDA100,
    0x84595161401484A0,
    0xA56FA5B99019A5C8,
    0xCECB8F27F4200F3A,
    0x813F3978F8940985,
    0xA18F07D736B90BE6,
    0xC9F2C9CD04674EDF,
    0xFC6F7C4045812297,
    0x9DC5ADA82B70B59E,
    0xC5371912364CE306,
    0xF684DF56C3E01BC7,
    0x9A130B963A6C115D,
    0xC097CE7BC90715B4,
    0xF0BDC21ABB48DB21,
    0x96769950B50D88F5,
    0xBC143FA4E250EB32,
    0xEB194F8E1AE525FE,
    0x92EFD1B8D0CF37BF,
    0xB7ABC627050305AE,
    0xE596B7B0C643C71A,
    0x8F7E32CE7BEA5C70,
    0xB35DBF821AE4F38C,
];

/// ⌊g·cp / 2^64⌋ rounded to odd: the low bit says "inexact", which keeps the comparisons
/// below exact although `g` over-approximates the power of ten (bits 32..64 of the product at
/// most 1 count as exact, as in the paper).
#[inline(always)]
fn round_to_odd(g: u64, cp: u32) -> u32 {
    let p = u128::from(g) * u128::from(cp);
    let hi = (p >> 64) as u32;
    let lo = (p >> 32) as u32;
    hi | u32::from(lo > 1)
}

/// The shortest nearest decimal of a finite, non-zero `f32` given by its bits without sign:
/// `(digits, exp)` with value = digits × 10^exp and digits < 10^9 (it may end in zeros).
#[inline(always)]
pub(crate) fn to_decimal(abs: u32) -> (u32, i32) {
    let ieee_exp = abs >> 23;
    let ieee_sig = abs & 0x7f_ffff;
    let (c, q) = if ieee_exp != 0 {
        let c = ieee_sig | 1 << 23;
        let q = ieee_exp as i32 - 150;
        // Integers below 2^24 are their own shortest decimal.
        if (-23..=0).contains(&q) && c & ((1 << -q) - 1) == 0 {
            return (c >> -q, 0);
        }
        (c, q)
    } else {
        (ieee_sig, -149)
    };
    let even = c & 1 == 0;
    // At a power of two the next lower float is half as far away as the next higher one.
    let lower_closer = ieee_sig == 0 && ieee_exp > 1;
    let cb = 4 * c;
    // k = ⌊log10(2^q)⌋, or ⌊log10(¾·2^q)⌋ when the lower neighbour is closer.
    let k = (q * 1_262_611 - if lower_closer { 524_031 } else { 0 }) >> 22;
    // h = q + ⌊log2(10^-k)⌋ + 1, in 1..=4, so the shifted values stay below 2^30.
    let h = q + ((-k * 1_741_647) >> 19) + 1;
    let g = POW10[(-k + 31) as usize];
    // The interval's ends: (4c − 2) and (4c + 2) in the same scale, or (4c − 1) below a power
    // of two. (Deriving them from one product by 128-bit addition measured slower.)
    let cbl = cb - 2 + u32::from(lower_closer);
    let vbl = round_to_odd(g, cbl << h);
    let vb = round_to_odd(g, cb << h);
    let vbr = round_to_odd(g, (cb + 2) << h);
    // Round-half-even: the interval's ends belong to it only when c is even.
    let lower = vbl + u32::from(!even);
    let upper = vbr - u32::from(!even);
    let s = vb / 4;
    // At most one multiple of 10^(k+1) lies in the interval; if it does, it is the shortest.
    // (Whether it does is a coin flip for real data, yet selecting without branches measured
    // 15 % slower than these branches: it lengthens the chain the writer waits on.)
    if s >= 10 {
        let sp = s / 10;
        let up_inside = lower <= 40 * sp;
        let wp_inside = 40 * sp + 40 <= upper;
        if up_inside != wp_inside {
            return (sp + u32::from(wp_inside), k + 1);
        }
    }
    // Otherwise s·10^k or (s+1)·10^k: the one inside, or the nearer, ties to even.
    let u_inside = lower <= 4 * s;
    let w_inside = 4 * s + 4 <= upper;
    if u_inside != w_inside {
        return (s + u32::from(w_inside), k);
    }
    let mid = 4 * s + 2;
    let round_up = vb > mid || (vb == mid && s & 1 != 0);
    (s + u32::from(round_up), k)
}

/// The 8 decimal digits of `n` < 10^8, one per byte, most significant in the lowest byte.
#[inline(always)]
fn eight_digits(n: u32) -> u64 {
    // Split into 4-digit halves in two 32-bit lanes, then 2-digit quarters in four 16-bit lanes,
    // then digits in eight bytes; each division by 100 or 10 is a multiply and a shift that is
    // exact for the lane's range.
    let n = u64::from(n);
    let halves = (n / 10_000) | ((n % 10_000) << 32);
    let hundreds = ((halves * 10_486) >> 20) & 0x0000_007f_0000_007f;
    let quarters = hundreds | (halves - hundreds * 100) << 16;
    let tens = ((quarters * 103) >> 10) & 0x000f_000f_000f_000f;
    tens | (quarters - tens * 10) << 8
}

/// Writes digits×10^-frac, which is in [1e-5, 1), as `0.` and `frac` digits less the trailing
/// zeros, at `w[o..]`; returns the length.
///
/// `frac` is in 7..=13 for every such value: below 1 the binary exponent is at most −24, so
/// Schubfach's decimal exponent is at most −8 (−7 after dropping a digit); from 1e-5 up, nine
/// digits reach at most the 13th place. The exhaustive test holds this, too.
#[inline(always)]
fn write_fraction(w: &mut Window, o: usize, digits: u32, frac: usize) -> usize {
    let lo = eight_digits(digits % 100_000_000);
    // The zero bytes at the top of `lo` are the trailing zeros (all 8 when the low part is 0).
    let trailing = (lo.leading_zeros() / 8) as usize;
    let lo = lo | 0x3030_3030_3030_3030;
    // The nine digits end at the last place: stored right-aligned after a run of zeros, then
    // "0." on top (digits landing there are leading zeros, as digits < 10^frac). Composing
    // the text in one 128-bit register instead measured 10 % slower.
    w[o..o + 8].write_copy_of_slice(b"00000000");
    w[o + frac - 7].write(b'0' + (digits / 100_000_000) as u8);
    w[o + frac - 6..o + frac + 2].write_copy_of_slice(&lo.to_le_bytes());
    w[o..o + 2].write_copy_of_slice(b"0.");
    2 + frac - trailing
}

/// Sixteen ASCII zeros.
const ASCII_ZEROS: u128 = 0x3030_3030_3030_3030_3030_3030_3030_3030;

/// Any other finite non-zero value: plain decimal from 1 to 1e9, else with an exponent.
#[inline(never)]
fn write_general(w: &mut Window, o: usize, digits: u32, exp: i32) -> usize {
    // Nine digit bytes, most significant first: byte 0 holds the 10^8 digit.
    let all =
        u128::from(digits / 100_000_000) | u128::from(eight_digits(digits % 100_000_000)) << 8;
    let leading = (all.trailing_zeros() / 8) as usize;
    // Bytes 9..16 are always zero, so the zero bytes at the top beyond those are trailing zeros.
    let trailing = (all.leading_zeros() / 8 - 7) as i32;
    let n = 9 - leading - trailing as usize;
    // The significant digits as ASCII from byte 0; every byte after them reads '0'.
    let ascii = (all >> (8 * leading)) | ASCII_ZEROS;
    let exp = exp + trailing;
    // Position of the decimal point counted from the first digit: value = 0.DIGITS × 10^point.
    let point = n as i32 + exp;
    if point > 0 && point <= 9 {
        let p = point as usize;
        store(w, o, ascii);
        if p >= n {
            // An integer: the bytes after the digits already read '0'.
            return o + p;
        }
        w[o + p].write(b'.');
        store(w, o + p + 1, ascii >> (8 * p));
        return o + n + 1;
    }
    write_scientific(w, o, ascii, n, point - 1)
}

fn write_scientific(w: &mut Window, o: usize, ascii: u128, n: usize, exp10: i32) -> usize {
    store(w, o, ascii);
    let mut end = o + 1;
    if n > 1 {
        w[o + 1].write(b'.');
        store(w, o + 2, ascii >> 8);
        end = o + n + 1;
    }
    w[end].write(b'e');
    end += 1;
    if exp10 < 0 {
        w[end].write(b'-');
        end += 1;
    }
    let e = exp10.unsigned_abs();
    if e >= 10 {
        w[end].write(b'0' + (e / 10) as u8);
        end += 1;
    }
    w[end].write(b'0' + (e % 10) as u8);
    end + 1
}

#[inline(always)]
fn store(w: &mut Window, at: usize, bytes: u128) {
    w[at..at + 16].write_copy_of_slice(&bytes.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(v: f32) -> String {
        let mut out = b"x".to_vec();
        write_f32(&mut out, v);
        String::from_utf8(out[1..].to_vec()).unwrap()
    }

    /// (digits without trailing zeros, exponent of the last digit) of a decimal text, read
    /// without allocating: the exhaustive test calls this billions of times.
    fn digits_of(s: &str) -> (u64, i32) {
        let (mant, exp) = s.split_once(['e', 'E']).unwrap_or((s, "0"));
        let mut exp: i32 = exp.parse().unwrap();
        let mut digits = 0u64;
        let mut after_point = false;
        for b in mant.bytes() {
            match b {
                b'0'..=b'9' => {
                    digits = digits * 10 + u64::from(b - b'0');
                    exp -= i32::from(after_point);
                }
                b'.' => after_point = true,
                _ => {}
            }
        }
        while digits != 0 && digits.is_multiple_of(10) {
            digits /= 10;
            exp += 1;
        }
        (digits, exp)
    }

    /// Checks one bit pattern: parses back to the same bits, straight and through f64, and has
    /// ryu's digits (shortest, nearest) unless it is [`TWICE_ROUNDED`]. Returns a description of
    /// the failure.
    fn check(bits: u32, ryu: &mut ryu::Buffer, out: &mut Vec<u8>) -> Result<(), String> {
        let v = f32::from_bits(bits);
        out.clear();
        write_f32(out, v);
        let ours = std::str::from_utf8(out).map_err(|e| e.to_string())?;
        let back: f32 = match ours {
            "NaN" => f32::NAN,
            "Infinity" => f32::INFINITY,
            "-Infinity" => f32::NEG_INFINITY,
            _ => ours
                .parse()
                .map_err(|e| format!("{bits:#010x}: {ours:?} does not parse: {e}"))?,
        };
        if v.is_nan() {
            return if back.is_nan() {
                Ok(())
            } else {
                Err(format!("{bits:#010x}: NaN -> {ours}"))
            };
        }
        if back.to_bits() != bits {
            return Err(format!(
                "{bits:#010x} ({v:e}): {ours:?} reads back as {back:e}"
            ));
        }
        if v.is_finite() {
            let through_f64 = ours
                .parse::<f64>()
                .map_err(|e| format!("{bits:#010x}: {ours:?} does not parse as f64: {e}"))?
                as f32;
            if through_f64.to_bits() != bits {
                return Err(format!(
                    "{bits:#010x} ({v:e}): {ours:?} read as f64 then cast reads back as \
                     {through_f64:e}"
                ));
            }
        }
        if v.is_finite() && v != 0.0 && bits & 0x7fff_ffff != TWICE_ROUNDED {
            let theirs = ryu.format_finite(v);
            if digits_of(ours) != digits_of(theirs) {
                return Err(format!("{bits:#010x}: ours {ours:?}, ryu {theirs:?}"));
            }
        }
        Ok(())
    }

    #[test]
    fn specials_use_postgresql_spellings() {
        assert_eq!(text(f32::NAN), "NaN");
        assert_eq!(text(-f32::NAN), "NaN");
        assert_eq!(text(f32::INFINITY), "Infinity");
        assert_eq!(text(f32::NEG_INFINITY), "-Infinity");
        assert_eq!(text(0.0), "0");
        assert_eq!(text(-0.0), "-0");
        assert_eq!("-0".parse::<f32>().unwrap().to_bits(), (-0.0f32).to_bits());
    }

    #[test]
    fn layouts_across_the_range() {
        let cases: &[(f32, &str)] = &[
            (1.0, "1"),
            (-1.0, "-1"),
            (0.5, "0.5"),
            (0.1, "0.1"),
            (100.0, "100"),
            (123.456, "123.456"),
            (-0.0345678, "-0.0345678"),
            (0.00012, "0.00012"),
            (0.000012, "0.000012"),
            (0.0000012, "1.2e-6"),
            (16777216.0, "16777216"),
            (1e9, "1e9"),
            (123456790.0, "123456790"),
            (1.5e10, "1.5e10"),
            (f32::MAX, "3.4028235e38"),
            (f32::MIN, "-3.4028235e38"),
            (f32::MIN_POSITIVE, "1.1754944e-38"),
            (f32::from_bits(1), "1e-45"),
            (f32::from_bits(0x007f_ffff), "1.1754942e-38"),
            (f32::EPSILON, "1.1920929e-7"),
        ];
        for &(v, want) in cases {
            assert_eq!(text(v), want, "{v:e}");
            assert_eq!(want.parse::<f32>().unwrap().to_bits(), v.to_bits());
        }
    }

    #[test]
    fn the_one_value_rounding_twice_would_bend_is_written_one_digit_longer() {
        for v in [
            f32::from_bits(TWICE_ROUNDED),
            -f32::from_bits(TWICE_ROUNDED),
        ] {
            let shortest = ryu::Buffer::new().format_finite(v).to_owned();
            let through_f64 = |t: &str| t.parse::<f64>().unwrap() as f32;
            assert_ne!(through_f64(&shortest).to_bits(), v.to_bits(), "{shortest}");
            let ours = text(v);
            assert_eq!(ours.trim_start_matches('-'), "7.0385307e-26");
            assert_eq!(ours.parse::<f32>().unwrap().to_bits(), v.to_bits());
            assert_eq!(through_f64(&ours).to_bits(), v.to_bits());
        }
    }

    #[test]
    fn lists_are_joined_and_nothing_leaks_past_the_end() {
        let mut out = b"{".to_vec();
        write_f32_list(&mut out, &[1.0, -0.25, f32::NAN, 1e-7, -0.0]);
        out.push(b'}');
        assert_eq!(out, b"{1,-0.25,NaN,1e-7,-0}");
        let mut empty = b"{".to_vec();
        write_f32_list(&mut empty, &[]);
        assert_eq!(empty, b"{");
    }

    #[test]
    fn sampled_bit_patterns_match_ryu_and_read_back() {
        // Every 4099th pattern (prime stride, so every exponent and many mantissa shapes),
        // plus the neighbourhood of each power of two, where the interval is asymmetric.
        let mut ryu = ryu::Buffer::new();
        let mut out = Vec::new();
        let powers = (0..=255u32).flat_map(|e| {
            let base = e << 23;
            [base, base + 1, base.wrapping_sub(1), base | 0x8000_0000]
        });
        for bits in (0..=u32::MAX).step_by(4099).chain(powers) {
            check(bits, &mut ryu, &mut out).unwrap();
        }
    }

    /// All 2^32 bit patterns: `scripts/check-f32-all.sh` runs this in release mode.
    #[test]
    #[ignore = "exhaustive: minutes in release mode; run scripts/check-f32-all.sh"]
    fn every_f32_reads_back_and_is_shortest() {
        use rayon::prelude::*;
        const SHARDS: u32 = 4096;
        let failures: Vec<String> = (0..SHARDS)
            .into_par_iter()
            .flat_map_iter(|shard| {
                let span = (1u64 << 32) / u64::from(SHARDS);
                let lo = u64::from(shard) * span;
                let mut ryu = ryu::Buffer::new();
                let mut out = Vec::with_capacity(64);
                (lo..lo + span)
                    .filter_map(move |bits| check(bits as u32, &mut ryu, &mut out).err())
                    .take(3)
                    .collect::<Vec<_>>()
            })
            .collect();
        assert!(
            failures.is_empty(),
            "{} shards failed, e.g.:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
}
