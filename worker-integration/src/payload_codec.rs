//! [`PayloadCodec`]: the Temporal SDK's `PayloadCodec` trait over [`tcodec::Codec`].

use std::sync::Arc;

use tcodec::{Codec, ExternalPayloadDetails, Payload};
use temporalio_common::data_converters::{
    PayloadCodec as SdkPayloadCodec, PayloadConversionError, SerializationContextData,
};
use temporalio_common::protos::temporal::api::common::v1::{
    Payload as SdkPayload, payload::ExternalPayloadDetails as SdkExternal,
};

/// Seals every payload a worker or client sends with tcodec, and opens tcodec
/// payloads (and the official samples' legacy ones) it receives.
///
/// The work is done when the SDK calls `encode`/`decode`; the returned future
/// is already complete. A key version's data key is unwrapped once (the first
/// payload under it may wait on KMS) and cached after that.
#[derive(Clone)]
pub struct PayloadCodec {
    codec: Arc<Codec>,
}

impl std::fmt::Debug for PayloadCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayloadCodec").finish_non_exhaustive()
    }
}

impl PayloadCodec {
    /// A payload codec over `codec`.
    pub fn new(codec: Arc<Codec>) -> Self {
        Self { codec }
    }

    /// The codec underneath.
    pub fn codec(&self) -> &Arc<Codec> {
        &self.codec
    }
}

type CodecFuture = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Vec<SdkPayload>, PayloadConversionError>> + Send>,
>;

fn run(
    payloads: Vec<SdkPayload>,
    op: impl FnOnce(Vec<Payload>) -> Result<Vec<Payload>, tcodec::CodecError>,
) -> CodecFuture {
    let inputs: Vec<Payload> = payloads.into_iter().map(from_sdk).collect();
    let result = op(inputs)
        .map(|out| out.into_iter().map(to_sdk).collect())
        .map_err(|e| PayloadConversionError::EncodingError(Box::new(CodecFailure::from(&e))));
    Box::pin(std::future::ready(result))
}

/// A codec error with its causes in the message: the SDK reports codec errors
/// by their `Display` alone (in the workflow task failure the server records),
/// so "payload 0: cannot use key k2" would lose its reason. Codec errors name
/// payload indices and key ids, never key material or plaintext.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CodecFailure(String);

impl From<&tcodec::CodecError> for CodecFailure {
    fn from(e: &tcodec::CodecError) -> Self {
        Self(tcodec::display_chain(e))
    }
}

impl SdkPayloadCodec for PayloadCodec {
    fn encode(
        &self,
        _context: &SerializationContextData,
        payloads: Vec<SdkPayload>,
    ) -> CodecFuture {
        run(payloads, |p| self.codec.encode(&p))
    }

    fn decode(
        &self,
        _context: &SerializationContextData,
        payloads: Vec<SdkPayload>,
    ) -> CodecFuture {
        // The SDK hands the payloads over: decrypt them in their own buffers.
        run(payloads, |p| self.codec.decode_owned(p))
    }
}

/// The SDK's payload as tcodec's (the same protobuf message; fields move, no copies).
pub fn from_sdk(p: SdkPayload) -> Payload {
    Payload {
        metadata: p.metadata.into_iter().collect(),
        data: p.data.into(),
        external_payloads: p
            .external_payloads
            .into_iter()
            .map(|e| ExternalPayloadDetails {
                size_bytes: e.size_bytes,
            })
            .collect(),
    }
}

/// tcodec's payload as the SDK's. The SDK's `data` is a `Vec<u8>`: an encoded
/// payload's data moves over as it is; a decoded payload's data, a view into
/// its decryption buffer, is moved to the front of that buffer (one `memmove`,
/// no allocation).
// The protobuf types may gain fields; `..Default::default()` keeps this building.
#[allow(clippy::needless_update)]
pub fn to_sdk(p: Payload) -> SdkPayload {
    SdkPayload {
        metadata: p.metadata.into_iter().collect(),
        data: p.data.into(),
        external_payloads: p
            .external_payloads
            .into_iter()
            .map(|e| SdkExternal {
                size_bytes: e.size_bytes,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}
