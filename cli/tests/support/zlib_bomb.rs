//! `binary/zlib` payloads (the official samples' format) that inflate far
//! beyond their size: for the tests of decoded-size limits and budgets.

/// The zlib data of a serialized payload whose protobuf field `field` holds
/// `len` zero bytes (2, data: a decoded answer holds them; 15, a field no one
/// reads: only the work of inflating them remains). A few KiB per MiB.
pub fn zlib_bomb(field: u8, len: usize) -> Vec<u8> {
    use std::io::Write;
    let mut inner = vec![(field << 3) | 2];
    let mut n = len;
    while n >= 0x80 {
        inner.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    inner.push(n as u8);
    inner.resize(inner.len() + len, 0);
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(&inner).expect("writing to a Vec");
    z.finish().expect("writing to a Vec")
}
