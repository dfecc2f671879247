//! [`PayloadCodec`]: the Temporal SDK's `PayloadCodec` trait over [`tcodec::Codec`].

use std::sync::Arc;

use tcodec::storage::s3::S3Store;
use tcodec::storage::{self, Reference, StorageError};
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
///
/// With External Storage ([`PayloadCodec::with_storage`]), a sealed payload
/// of at least the threshold is stored in S3 after sealing and replaced by a
/// reference in Temporal's own shape (the one every SDK's S3 driver and the
/// Web UI read), and references are fetched before opening.
#[derive(Clone)]
pub struct PayloadCodec {
    codec: Arc<Codec>,
    storage: Option<S3Store>,
}

impl std::fmt::Debug for PayloadCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayloadCodec").finish_non_exhaustive()
    }
}

impl PayloadCodec {
    /// A payload codec over `codec`.
    pub fn new(codec: Arc<Codec>) -> Self {
        Self {
            codec,
            storage: None,
        }
    }

    /// This codec with External Storage in `store`.
    pub fn with_storage(mut self, store: Option<S3Store>) -> Self {
        self.storage = store;
        self
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
        let Some(store) = self.storage.clone() else {
            return run(payloads, |p| self.codec.encode(&p));
        };
        let codec = Arc::clone(&self.codec);
        Box::pin(async move {
            let inputs: Vec<Payload> = payloads.into_iter().map(from_sdk).collect();
            let sealed = codec.encode(&inputs).map_err(|e| failure(&e))?;
            store_large(&store, sealed).await.map_err(|e| failure(&e))
        })
    }

    fn decode(
        &self,
        _context: &SerializationContextData,
        payloads: Vec<SdkPayload>,
    ) -> CodecFuture {
        let references = payloads.iter().any(|p| {
            storage::is_reference(p.metadata.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
        });
        if !references {
            // The SDK hands the payloads over: decrypt them in their own buffers.
            return run(payloads, |p| self.codec.decode_owned(p));
        }
        let (codec, store) = (Arc::clone(&self.codec), self.storage.clone());
        Box::pin(async move {
            let inputs: Vec<Payload> = payloads.into_iter().map(from_sdk).collect();
            let fetched = fetch_references(store.as_ref(), inputs)
                .await
                .map_err(|e| failure(&e))?;
            codec
                .decode_owned(fetched)
                .map(|out| out.into_iter().map(to_sdk).collect())
                .map_err(|e| failure(&e))
        })
    }
}

fn failure(e: &dyn std::error::Error) -> PayloadConversionError {
    PayloadConversionError::EncodingError(Box::new(CodecFailure(tcodec::display_chain(e))))
}

/// Stores each sealed payload of at least the threshold and puts its
/// reference in its place. The object key derives from the ciphertext's
/// SHA-256 and the write is conditional, so a retried task stores nothing
/// twice.
async fn store_large(
    store: &S3Store,
    sealed: Vec<Payload>,
) -> Result<Vec<SdkPayload>, StorageError> {
    let config = store.config();
    let mut out = Vec::with_capacity(sealed.len());
    let mut objects = Vec::new();
    for (index, payload) in sealed.into_iter().enumerate() {
        let object = storage::object_bytes(&payload);
        if object.len() < config.threshold {
            out.push(to_sdk(payload));
            continue;
        }
        let (location, reference) = config.place(&object);
        out.push(to_sdk(reference.to_payload()));
        objects.push((index, location, object.into()));
    }
    store.put_each(objects, |_, _, _| {}).await?;
    Ok(out)
}

/// Replaces each reference by the payload it names, fetched: every
/// reference is checked against the configuration before the first request,
/// and each object is fetched once.
async fn fetch_references(
    store: Option<&S3Store>,
    mut payloads: Vec<Payload>,
) -> Result<Vec<Payload>, StorageError> {
    let mut locations = Vec::new();
    for (index, p) in payloads.iter().enumerate() {
        let metadata = || p.metadata.iter().map(|(k, v)| (k.as_str(), v.as_slice()));
        if !storage::is_reference(metadata()) {
            continue;
        }
        let Some(store) = store else {
            return Err(StorageError::NotConfigured { index });
        };
        let reference = Reference::parse(index, metadata(), &p.data, &p.external_payloads)?;
        locations.push((index, store.permit(index, &reference)?));
    }
    if let Some(store) = store {
        // Each object once, however many references name it.
        let fetched = store
            .fetch_each(&locations, usize::MAX, |_, _, _| {})
            .await?;
        for (index, payload) in fetched {
            payloads[index] = payload;
        }
    }
    Ok(payloads)
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
