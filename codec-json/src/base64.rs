//! Base64 as proto3 JSON allows it in `bytes` fields: standard or URL-safe
//! alphabet, padded or not. Strict otherwise: trailing bits must be zero, as in
//! the `base64` crate's engines (a test compares the two). SIMD throughout
//! (`base64-simd`), since every payload of every request passes through here.

/// Decodes `text` onto the end of `out`. On failure `out` is as it was.
#[inline]
pub(crate) fn decode_append(text: &str, out: &mut Vec<u8>) -> bool {
    let trimmed = text.trim_end_matches('=');
    let start = out.len();
    for engine in [&base64_simd::STANDARD_NO_PAD, &base64_simd::URL_SAFE_NO_PAD] {
        if engine.decode_append(trimmed, out).is_ok() {
            return true;
        }
        out.truncate(start);
    }
    false
}

/// Appends `bytes` to `out` as a quoted, padded, standard base64 string.
#[inline]
pub(crate) fn encode_quoted(bytes: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    base64_simd::STANDARD.encode_append(bytes, out);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};

    use super::*;

    /// The SIMD decoder accepts exactly what the `base64` crate's strict
    /// engines accept (standard or URL-safe, padded or not, zero trailing
    /// bits), and decodes it the same: every string of up to five characters
    /// over an alphabet of both kinds of base64, padding and junk.
    #[test]
    fn base64_is_read_as_the_base64_crate_reads_it() {
        let reference = |text: &str| {
            let trimmed = text.trim_end_matches('=');
            STANDARD_NO_PAD
                .decode(trimmed)
                .or_else(|_| URL_SAFE_NO_PAD.decode(trimmed))
                .ok()
        };
        let alphabet = ['A', 'Q', 'g', '/', '+', '-', '_', '=', '%', 'w'];
        let mut texts = vec![String::new()];
        let mut checked = 0;
        for _ in 0..5 {
            texts = texts
                .iter()
                .flat_map(|t| alphabet.iter().map(move |c| format!("{t}{c}")))
                .collect();
            for text in &texts {
                let mut out = vec![7];
                let ok = decode_append(text, &mut out);
                match reference(text) {
                    Some(bytes) => {
                        assert!(ok, "{text:?}");
                        assert_eq!(out[1..], bytes[..], "{text:?}");
                    }
                    None => assert!(!ok && out == [7], "{text:?}"),
                }
                checked += 1;
            }
        }
        assert_eq!(checked, 10 + 100 + 1_000 + 10_000 + 100_000);
    }

    #[test]
    fn written_base64_is_quoted_and_padded() {
        let mut out = b"x".to_vec();
        encode_quoted(&[0xff, 0x00], &mut out);
        assert_eq!(out, b"x\"/wA=\"");
    }
}
