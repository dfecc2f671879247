//! zstd compression of the inner payload, with a hard limit on what
//! decompression may produce (a small payload must not expand into gigabytes).

use std::cell::RefCell;
use std::io::Read;

/// Whether and how the codec compresses before encrypting.
///
/// Compression happens before encryption, so the ciphertext length reveals how
/// compressible the plaintext was. Where an attacker can mix their own input
/// with a secret in one payload and watch the stored size, that is a length
/// side channel (as in CRIME/BREACH); turn compression off for such workflows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Compression {
    /// Never compress.
    Off,
    /// Compress with zstd when the serialized payload is at least `min_size`
    /// bytes and does not look random (see `looks_incompressible`), keeping
    /// the result only when it is smaller.
    Zstd {
        /// zstd level, 1 (fast) to 22 (small). 3 is zstd's default.
        level: i32,
        /// Payloads smaller than this are not worth compressing.
        min_size: usize,
    },
}

impl Default for Compression {
    fn default() -> Self {
        Self::Zstd {
            level: 3,
            min_size: 512,
        }
    }
}

thread_local! {
    // A zstd context costs far more to create than to use on a small payload,
    // so each thread keeps one per level.
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

/// Compresses `src` into one zstd frame that records its content size.
pub(crate) fn zstd_compress(src: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let reuse = matches!(&*slot, Some((l, _)) if *l == level);
        if !reuse {
            *slot = Some((level, zstd::bulk::Compressor::new(level)?));
        }
        match &mut *slot {
            Some((_, compressor)) => compressor.compress(src),
            None => zstd::bulk::compress(src, level),
        }
    })
}

/// Whether `src` looks like data zstd cannot shrink (already compressed,
/// encrypted, random): its bytes, sampled, are spread over the 256 values as
/// evenly as random bytes are. The codec seals such a payload (serialized) as
/// it is without trying zstd, whose work would be thrown away (measured: a
/// 64 KiB random payload costs zstd level 3 about 12 µs, this test about
/// 0.23 µs, and 0.02 µs on ASCII such as JSON).
///
/// The sample is `WINDOWS` runs of `WINDOW` bytes spread over the input (all
/// of it when shorter), and the test Pearson's chi-squared statistic against
/// the uniform distribution. A sample of n bytes drawn evenly from k symbols
/// scores about n (256 / k - 1) + 255: random bytes about 255 (standard
/// deviation about 23; 266 with an SDK's metadata in the sample, at most 389
/// in 20,000 trials), 512 bytes of 7-bit data (which zstd shrinks by an
/// eighth) about 766, base64 1,790, text and JSON thousands. Below 480 is
/// judged random: data spread evenly over 178 symbols or more, which zstd
/// could shrink by 7% at most. What it cannot see is repetition of
/// random-looking runs (the same encrypted block many times over): such a
/// payload is sealed uncompressed.
pub fn looks_incompressible(src: &[u8]) -> bool {
    const WINDOWS: usize = 4;
    const WINDOW: usize = 128;
    /// Nine standard deviations above random bytes' mean.
    const UNIFORM_BELOW: u64 = 480;
    let sample: [&[u8]; WINDOWS] = if src.len() <= WINDOWS * WINDOW {
        [src, &[], &[], &[]]
    } else {
        let stride = (src.len() - WINDOW) / (WINDOWS - 1);
        std::array::from_fn(|w| &src[w * stride..w * stride + WINDOW])
    };
    let n: usize = sample.iter().map(|run| run.len()).sum();
    // First, cheaply: random bytes have the high bit set in half of them,
    // ASCII text (JSON, base64, hex) in none. Fewer than a quarter is no
    // random sample, nor one spread over 178 symbols or more (at least 50 of
    // which are 0x80 or above). Counted in bytes, 64 at a time (no count can
    // pass 255), so the loop vectorizes over byte lanes (timed in a loop: 17
    // ns for 512 bytes of JSON, where a count kept as `usize` took 190).
    let high: usize = sample
        .iter()
        .flat_map(|run| run.chunks(64))
        .map(|chunk| usize::from(chunk.iter().fold(0u8, |high, &b| high + (b >> 7))))
        .sum();
    if n == 0 || high * 4 < n {
        return false;
    }
    let mut counts = [0u32; 256];
    // Loops over each run (a flattened iterator cost a third more here).
    for run in sample {
        for &b in run {
            counts[usize::from(b)] += 1;
        }
    }
    // chi^2 = sum (c - e)^2 / e with e = n / 256, which is 256 sum(c^2) / n - n.
    let n = n as u64;
    // A count is at most 512, so its square fits the `u32` lanes it is made in.
    let squares: u64 = counts.iter().map(|&c| u64::from(c * c)).sum();
    (256 * squares / n).saturating_sub(n) < UNIFORM_BELOW
}

/// Why decompression gave nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DecompressError {
    /// The input is not valid compressed data.
    Corrupt,
    /// The output would exceed the limit.
    TooLarge,
}

/// The zstd frame magic number (RFC 8878 section 3.1.1), little-endian.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Decompresses a tcodec plaintext (FORMAT.md section 4.3): exactly one
/// standard zstd frame that records its content size and names no
/// dictionary, with nothing after it; refuses a content size over `limit`
/// before decompressing, and output that differs from the content size.
pub(crate) fn zstd_decompress(src: &[u8], limit: usize) -> Result<Vec<u8>, DecompressError> {
    use zstd::zstd_safe;
    if !src.starts_with(&ZSTD_MAGIC) {
        return Err(DecompressError::Corrupt);
    }
    // One frame, ending where the data ends.
    if zstd_safe::find_frame_compressed_size(src) != Ok(src.len()) {
        return Err(DecompressError::Corrupt);
    }
    if zstd_safe::get_dict_id_from_frame(src).is_some() {
        return Err(DecompressError::Corrupt);
    }
    let size = match zstd_safe::get_frame_content_size(src) {
        Ok(Some(size)) => usize::try_from(size).map_err(|_| DecompressError::TooLarge)?,
        _ => return Err(DecompressError::Corrupt),
    };
    if size > limit {
        return Err(DecompressError::TooLarge);
    }
    // The frame header's size is a claim, not a fact: the output buffer is
    // exactly that big, so more data is an error, not a reallocation.
    let out = DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new().map_err(|_| DecompressError::Corrupt)?);
        }
        match &mut *slot {
            Some(d) => d
                .decompress(src, size)
                .map_err(|_| DecompressError::Corrupt),
            None => Err(DecompressError::Corrupt),
        }
    })?;
    if out.len() != size {
        return Err(DecompressError::Corrupt);
    }
    Ok(out)
}

/// Decompresses zlib data (the official samples' `binary/zlib`), refusing to
/// produce more than `limit` bytes.
pub(crate) fn zlib_decompress(src: &[u8], limit: usize) -> Result<Vec<u8>, DecompressError> {
    read_limited(flate2::read::ZlibDecoder::new(src), limit)
}

fn read_limited(reader: impl Read, limit: usize) -> Result<Vec<u8>, DecompressError> {
    let mut out = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    reader
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|_| DecompressError::Corrupt)?;
    if out.len() > limit {
        return Err(DecompressError::TooLarge);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zstd_round_trips_and_enforces_the_limit() {
        let data = b"temporal ".repeat(1000);
        let packed = zstd_compress(&data, 3).unwrap();
        assert!(packed.len() < data.len() / 10);
        assert_eq!(zstd_decompress(&packed, data.len()).unwrap(), data);
        assert_eq!(
            zstd_decompress(&packed, data.len() - 1),
            Err(DecompressError::TooLarge)
        );
        assert_eq!(
            zstd_decompress(b"not zstd", 100),
            Err(DecompressError::Corrupt)
        );
    }

    /// Bytes from xorshift64, a stand-in for random, encrypted or compressed
    /// data.
    fn noise(len: usize, mut x: u64) -> Vec<u8> {
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect()
    }

    #[test]
    fn only_uniform_looking_bytes_are_judged_incompressible() {
        for (len, seed) in [(512, 1), (1024, 2), (65_536, 3), (5 << 20, 4)] {
            let data = noise(len, seed);
            assert!(looks_incompressible(&data), "{len} random bytes");
            // The judgement is right: zstd keeps nothing of it.
            assert!(zstd_compress(&data, 3).unwrap().len() >= data.len());
        }
        let json = br#"{"order_id":"ord-4f1c2a9b","customer":"cust-1207","amount_cents":129900,"currency":"EUR"},"#
            .repeat(800);
        let packed = zstd_compress(&json, 3).unwrap();
        assert!(looks_incompressible(&packed), "zstd's own output");
        let hex: Vec<u8> = noise(32_768, 5)
            .iter()
            .flat_map(|b| format!("{b:02x}").into_bytes())
            .collect();
        const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let base64: Vec<u8> = noise(65_536, 6)
            .iter()
            .map(|b| B64[usize::from(b % 64)])
            .collect();
        let seven_bit: Vec<u8> = noise(65_536, 7).iter().map(|b| b & 0x7f).collect();
        for (name, data) in [
            ("JSON", &json),
            ("hex", &hex),
            ("base64", &base64),
            ("7-bit bytes", &seven_bit),
            (
                "UTF-8 Japanese",
                &"注文は支払い済みです。顧客番号と金額を確認してください。"
                    .repeat(60)
                    .into_bytes(),
            ),
            ("zeros", &vec![0u8; 4096]),
        ] {
            assert!(!looks_incompressible(data), "{name}");
            assert!(zstd_compress(data, 3).unwrap().len() < data.len(), "{name}");
        }
        assert!(!looks_incompressible(b""));
        // Its blind spot: random-looking runs repeated.
        let repeated = noise(1024, 8).repeat(64);
        assert!(looks_incompressible(&repeated));
        assert!(zstd_compress(&repeated, 3).unwrap().len() < repeated.len() / 20);
    }

    #[test]
    fn zstd_without_content_size_is_refused() {
        let data = vec![0u8; 100_000];
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        encoder.include_contentsize(false).unwrap();
        std::io::Write::write_all(&mut encoder, &data).unwrap();
        let packed = encoder.finish().unwrap();
        assert!(matches!(
            zstd::zstd_safe::get_frame_content_size(&packed),
            Ok(None)
        ));
        // FORMAT.md section 4.3: tcodec always records the size, so a frame
        // without one was not written by an encoder of the format.
        assert_eq!(
            zstd_decompress(&packed, 1 << 20),
            Err(DecompressError::Corrupt)
        );
    }

    #[test]
    fn a_lying_content_size_is_corrupt_not_a_bigger_buffer() {
        let data = vec![7u8; 4096];
        let mut packed = zstd_compress(&data, 3).unwrap();
        // Append a second frame: the first frame's header under-reports the total.
        packed.extend(zstd_compress(&data, 3).unwrap());
        assert_eq!(
            zstd_decompress(&packed, 1 << 20),
            Err(DecompressError::Corrupt)
        );
    }

    #[test]
    fn zlib_bomb_is_stopped_at_the_limit() {
        let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut enc, &vec![0u8; 10 << 20]).unwrap();
        let bomb = enc.finish().unwrap();
        assert!(bomb.len() < 20_000);
        assert_eq!(
            zlib_decompress(&bomb, 1 << 20),
            Err(DecompressError::TooLarge)
        );
        assert_eq!(zlib_decompress(&bomb, 10 << 20).unwrap().len(), 10 << 20);
    }
}
