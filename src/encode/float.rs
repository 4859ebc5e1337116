//! Shortest round-trip text for `f32`: the largest CPU cost of an export.
//!
//! A 768-d embedding is 768 floats per row. Each is written as the shortest decimal that reads
//! back (Rust's `str::parse::<f32>`, C's `strtof`, PostgreSQL's `float4in`) to the identical
//! bits, nearest the exact value: `ryu`'s output, straight from its stack buffer into the
//! caller's reused `Vec`. An exhaustive test over all 2^32 bit patterns checks the read-back
//! (`scripts/check-f32-all.sh`), both ways a server reads `real`: straight to f32 (PostgreSQL
//! 12 and later) and through f64 then a cast to f32 (`strtod` in the `float4in` of PostgreSQL
//! before 12, so of Greenplum 6 and AnalyticDB 6). Rounding twice lands on the neighbouring f32
//! for exactly one shortest text among all 2^32 patterns (and its negative): `7.038531e-26`,
//! which is therefore written one digit longer ([`TWICE_ROUNDED`]).
//!
//! A Schubfach formatter specialised for embedding values (digits stored straight into the
//! output, a branch-free layout for 1e-5 ≤ |v| < 1) was built and passed the same exhaustive
//! test (git history: "encode: single fraction layout"), but measured only 1.40–1.44× ryu in the
//! `f32_768` / `f32_1536` criterion groups, short of the 1.5× that would justify owning it.
//!
//! Non-finite values use PostgreSQL's spellings (`NaN`, `Infinity`, `-Infinity`), which `real`
//! and `real[]` accept; `-0.0` keeps its sign.

/// The longest text one `f32` can need (ryu's longest, e.g. `-1.17549435e-38`).
pub const MAX_F32_LEN: usize = 16;

/// The bits (sign cleared) of the one f32 whose shortest text, `7.038531e-26`, reads back as
/// its neighbour `7.0385313e-26` when read as f64 and then cast to f32 — as PostgreSQL before
/// 12 reads `real` (the case PostgreSQL 12 switched `float4in` to `strtof` for). Found by the
/// exhaustive test; [`TWICE_ROUNDED_TEXT`] reads back right both ways.
const TWICE_ROUNDED: u32 = 0x15ae_43fd;
const TWICE_ROUNDED_TEXT: &[u8] = b"7.0385307e-26";

/// Appends the shortest round-trip text of `v` to `out`.
pub fn write_f32(out: &mut Vec<u8>, v: f32) {
    write_with(out, &mut ryu::Buffer::new(), v);
}

/// Appends `values` as shortest round-trip texts separated by commas: the vector hot path.
pub fn write_f32_list(out: &mut Vec<u8>, values: &[f32]) {
    out.reserve(values.len() * (MAX_F32_LEN + 1));
    let mut buf = ryu::Buffer::new();
    for (i, &v) in values.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_with(out, &mut buf, v);
    }
}

#[inline(always)]
fn write_with(out: &mut Vec<u8>, buf: &mut ryu::Buffer, v: f32) {
    if v.is_finite() && v.to_bits() & 0x7fff_ffff != TWICE_ROUNDED {
        out.extend_from_slice(buf.format_finite(v).as_bytes());
    } else {
        write_rare(out, v);
    }
}

/// Non-finite values, and the one value rounding twice would bend.
#[cold]
fn write_rare(out: &mut Vec<u8>, v: f32) {
    if v.is_finite() {
        if v.is_sign_negative() {
            out.push(b'-');
        }
        out.extend_from_slice(TWICE_ROUNDED_TEXT);
    } else {
        write_non_finite(out, v);
    }
}

#[cold]
fn write_non_finite(out: &mut Vec<u8>, v: f32) {
    out.extend_from_slice(match (v.is_nan(), v.is_sign_negative()) {
        (true, _) => b"NaN",
        (false, false) => b"Infinity",
        (false, true) => b"-Infinity",
    });
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
        assert_eq!(text(0.0), "0.0");
        assert_eq!(text(-0.0), "-0.0");
        assert_eq!(
            "-0.0".parse::<f32>().unwrap().to_bits(),
            (-0.0f32).to_bits()
        );
    }

    #[test]
    fn extremes_read_back() {
        for v in [
            f32::MAX,
            f32::MIN,
            f32::MIN_POSITIVE,
            f32::from_bits(1),
            f32::from_bits(0x007f_ffff),
            f32::EPSILON,
            1e-7,
            0.1,
        ] {
            let t = text(v);
            assert!(t.len() <= MAX_F32_LEN, "{t}");
            assert_eq!(t.parse::<f32>().unwrap().to_bits(), v.to_bits(), "{t}");
        }
        assert_eq!(text(f32::MAX), "3.4028235e38");
        assert_eq!(text(f32::from_bits(1)), "1e-45");
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
        assert_eq!(out, b"{1.0,-0.25,NaN,1e-7,-0.0}");
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
