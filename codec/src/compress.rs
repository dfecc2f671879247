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
    /// bytes, keeping the result only when it is smaller.
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
