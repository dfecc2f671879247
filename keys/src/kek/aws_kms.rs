//! AWS KMS as the key-encryption key, through `aws-sdk-kms`.
//!
//! Data keys come from `GenerateDataKey` (AES-256), are unwrapped with
//! `Decrypt` and moved between KMS keys with `ReEncrypt`, always with the
//! [`EncryptionContext`] `{tcodec:keyring, tcodec:key-id}`, which KMS checks and
//! records in CloudTrail. Endpoint, region and credentials come from the normal
//! AWS configuration chain (`AWS_REGION`, `AWS_ENDPOINT_URL`, profiles, SSO,
//! instance roles …) unless set in [`AwsKmsOptions`].
//!
//! The provider owns a small runtime on its own thread, so its blocking calls
//! work from plain threads and from inside an async server alike. KMS is
//! called once per key version (the keyring caches unwrapped keys), so calls
//! are rare and each waits at most [`AwsKmsOptions::timeout`].

use std::collections::HashMap;
use std::fmt;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use aws_sdk_kms::Client;
use aws_sdk_kms::error::ProvideErrorMetadata;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use zeroize::Zeroizing;

use super::{EncryptionContext, KekError, KekProvider};
use crate::SecretBytes32;
use crate::document::KekRef;

/// Provider name of AWS KMS.
pub const PROVIDER: &str = super::AWS_KMS;

/// Settings of the AWS KMS provider. Unset fields come from the AWS
/// configuration chain.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AwsKmsOptions {
    /// KMS endpoint URL, e.g. for a VPC endpoint or a local KMS-compatible server.
    pub endpoint: Option<String>,
    /// AWS region.
    pub region: Option<String>,
    /// The KMS key (id, ARN or alias) that wraps new data keys by default.
    pub default_key: Option<String>,
    /// How long one KMS call (with its retries) may take.
    pub timeout: Duration,
    /// The KMS keys keyrings may name; any other is refused before KMS is
    /// called (see [`KekSettings::kms_keys`](super::KekSettings::kms_keys)).
    pub allowed_keys: Vec<String>,
}

impl Default for AwsKmsOptions {
    fn default() -> Self {
        Self {
            endpoint: None,
            region: None,
            default_key: None,
            timeout: Duration::from_secs(10),
            allowed_keys: Vec::new(),
        }
    }
}

impl AwsKmsOptions {
    /// These options with an endpoint URL.
    pub fn with_endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// These options with a region.
    pub fn with_region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// These options with a default KMS key for new data keys.
    pub fn with_default_key(mut self, key: impl Into<String>) -> Self {
        self.default_key = Some(key.into());
        self
    }

    /// These options allowing keyrings to name `keys` (and only those).
    pub fn with_allowed_keys(mut self, keys: Vec<String>) -> Self {
        self.allowed_keys = keys;
        self
    }

    /// These options with a per-call timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

type Job = Box<
    dyn FnOnce(Client) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send,
>;

/// AWS KMS as a [`KekProvider`].
pub struct AwsKmsKek {
    jobs: mpsc::Sender<Job>,
    options: AwsKmsOptions,
    /// The key ids and ARNs the allowed entries name, once `DescribeKey`
    /// has resolved them.
    resolved: std::sync::Mutex<Option<std::collections::HashSet<String>>>,
}

impl fmt::Debug for AwsKmsKek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsKmsKek")
            .field("endpoint", &self.options.endpoint)
            .field("region", &self.options.region)
            .field("default_key", &self.options.default_key)
            .finish_non_exhaustive()
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

impl AwsKmsKek {
    /// Starts the provider: loads the AWS configuration on its own thread.
    pub fn new(options: AwsKmsOptions) -> Result<Self, KekError> {
        let (jobs, inbox) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let opts = options.clone();
        thread::Builder::new()
            .name("tcodec-aws-kms".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let client = runtime.block_on(async {
                    let timeouts = aws_config::timeout::TimeoutConfig::builder()
                        .operation_timeout(opts.timeout)
                        .connect_timeout(opts.timeout.min(Duration::from_secs(3)))
                        .build();
                    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
                        .timeout_config(timeouts)
                        .retry_config(
                            aws_config::retry::RetryConfig::standard().with_max_attempts(3),
                        );
                    if let Some(url) = &opts.endpoint {
                        loader = loader.endpoint_url(url);
                    }
                    if let Some(region) = &opts.region {
                        loader = loader.region(aws_config::Region::new(region.clone()));
                    }
                    Client::new(&loader.load().await)
                });
                let _ = ready_tx.send(Ok(()));
                // Serve until every sender (the provider) is gone.
                while let Ok(job) = inbox.recv() {
                    runtime.block_on(job(client.clone()));
                }
            })
            .map_err(|e| KekError::Setup {
                provider: PROVIDER,
                reason: e.to_string(),
            })?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Self {
                jobs,
                options,
                resolved: std::sync::Mutex::new(None),
            }),
            Ok(Err(reason)) => Err(KekError::Setup {
                provider: PROVIDER,
                reason,
            }),
            Err(_) => Err(KekError::Setup {
                provider: PROVIDER,
                reason: "the KMS client thread stopped while starting".into(),
            }),
        }
    }

    /// Runs `call` on the provider's thread and waits for its answer.
    fn call<T: Send + 'static>(
        &self,
        operation: &'static str,
        ctx: &EncryptionContext,
        call: impl FnOnce(
            Client,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<T, CallError>> + Send>,
        > + Send
        + 'static,
    ) -> Result<T, CallError> {
        let (tx, rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |client| {
            Box::pin(async move {
                let _ = tx.send(call(client).await);
            })
        });
        let service = |source: BoxError| CallError::Service(source);
        self.jobs
            .send(job)
            .map_err(|_| service("the KMS client thread has stopped".into()))?;
        // The SDK enforces the operation timeout; this is a backstop.
        rx.recv_timeout(self.options.timeout + Duration::from_secs(5))
            .map_err(|_| {
                service(
                    format!(
                        "no answer within {:?} ({operation} for {})",
                        self.options.timeout,
                        ctx.key_id()
                    )
                    .into(),
                )
            })?
    }

    /// Refuses `kek` unless the deployment allows it: as written in the
    /// keyring, or as the key id or ARN an allowed entry resolves to. Only the
    /// allowed entries are ever sent to KMS here, never the keyring's.
    fn permit(&self, kek: &KekRef, ctx: &EncryptionContext) -> Result<(), KekError> {
        let refused = || KekError::NotAllowed {
            key_id: ctx.key_id().to_owned(),
            kek: kek.clone(),
        };
        let allowed = &self.options.allowed_keys;
        if allowed.is_empty() {
            return Err(refused());
        }
        if allowed.contains(&kek.key) {
            return Ok(());
        }
        let mut resolved = self
            .resolved
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if resolved.is_none() {
            *resolved = Some(self.resolve(ctx)?);
        }
        match resolved.as_ref() {
            Some(names) if names.contains(&kek.key) => Ok(()),
            _ => Err(refused()),
        }
    }

    /// The key ids and ARNs of the allowed entries (KMS `DescribeKey`).
    fn resolve(
        &self,
        ctx: &EncryptionContext,
    ) -> Result<std::collections::HashSet<String>, KekError> {
        let entries = self.options.allowed_keys.clone();
        self.call("DescribeKey", ctx, move |client| {
            Box::pin(async move {
                let mut names = std::collections::HashSet::new();
                for entry in entries {
                    let out = client
                        .describe_key()
                        .key_id(&entry)
                        .send()
                        .await
                        .map_err(service_error)?;
                    if let Some(meta) = out.key_metadata {
                        names.insert(meta.key_id);
                        names.extend(meta.arn);
                    }
                }
                Ok(names)
            })
        })
        .map_err(|e| {
            let kek = KekRef {
                provider: PROVIDER.to_owned(),
                key: self.options.allowed_keys.join(","),
            };
            self.error("DescribeKey", &kek, ctx, e)
        })
    }

    fn error(
        &self,
        operation: &'static str,
        kek: &KekRef,
        ctx: &EncryptionContext,
        e: CallError,
    ) -> KekError {
        match e {
            CallError::Refused => KekError::Unwrap {
                key_id: ctx.key_id().to_owned(),
                kek: kek.clone(),
            },
            CallError::Service(source) => KekError::Service {
                provider: PROVIDER,
                operation,
                key_id: ctx.key_id().to_owned(),
                source,
            },
        }
    }
}

/// How one KMS call failed.
#[derive(Debug)]
enum CallError {
    /// KMS refused the ciphertext: wrong key or encryption context, or corrupt.
    Refused,
    /// Anything else: unreachable, throttled, access denied, no such key …
    Service(BoxError),
}

fn context_map(ctx: &EncryptionContext) -> HashMap<String, String> {
    ctx.pairs().into_iter().collect()
}

/// A short, useful message: the service's error code and message, or for
/// transport failures the chain of causes (timeout, connection refused …).
fn service_error<E>(e: aws_sdk_kms::error::SdkError<E>) -> CallError
where
    E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
{
    let text = match &e {
        aws_sdk_kms::error::SdkError::ServiceError(service) => {
            let err = service.err();
            format!(
                "{}: {}",
                err.code().unwrap_or("service error"),
                err.message().unwrap_or("(no message)")
            )
        }
        other => crate::display_chain(other),
    };
    CallError::Service(text.into())
}

/// The KMS answers of Decrypt and ReEncrypt that mean "this blob was not
/// wrapped by that key in that context": a refusal, not an outage.
trait RefusesBlob {
    fn refuses_blob(&self) -> bool;
}

impl RefusesBlob for aws_sdk_kms::operation::decrypt::DecryptError {
    fn refuses_blob(&self) -> bool {
        self.is_invalid_ciphertext_exception() || self.is_incorrect_key_exception()
    }
}

impl RefusesBlob for aws_sdk_kms::operation::re_encrypt::ReEncryptError {
    fn refuses_blob(&self) -> bool {
        self.is_invalid_ciphertext_exception() || self.is_incorrect_key_exception()
    }
}

/// [`service_error`], except that a refused blob is [`CallError::Refused`].
fn unwrap_error<E>(e: aws_sdk_kms::error::SdkError<E>) -> CallError
where
    E: RefusesBlob + std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
{
    match e.as_service_error() {
        Some(s) if s.refuses_blob() => CallError::Refused,
        _ => service_error(e),
    }
}

fn plaintext_key(blob: Option<Blob>) -> Result<SecretBytes32, CallError> {
    let bytes = Zeroizing::new(blob.map(Blob::into_inner).unwrap_or_default());
    SecretBytes32::from_slice(&bytes).ok_or_else(|| {
        CallError::Service(format!("KMS returned a {}-byte data key, not 32", bytes.len()).into())
    })
}

fn ciphertext(blob: Option<Blob>) -> Result<Vec<u8>, CallError> {
    blob.map(Blob::into_inner)
        .filter(|b| !b.is_empty())
        .ok_or_else(|| CallError::Service("KMS returned no ciphertext".into()))
}

/// What `Encrypt` is given as its plaintext: never sent, never a data key.
const STAND_IN: [u8; 32] = [0; 32];

/// Bytes wiped when the last reference to them drops.
struct Wiped(Zeroizing<Vec<u8>>);

impl AsRef<[u8]> for Wiped {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Puts the data key into an `Encrypt` request body after the SDK has
/// serialized the request around [`STAND_IN`], in a buffer of its own that is
/// zeroized on drop (as is every copy made here). The copies the HTTP and TLS
/// stacks make while sending are beyond its reach. If the stand-in is not
/// found exactly once, the request fails: it is never sent with the stand-in.
#[derive(Clone)]
struct SealPlaintext {
    /// The data key in base64, as the JSON body carries it.
    key_b64: std::sync::Arc<Zeroizing<String>>,
}

impl fmt::Debug for SealPlaintext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealPlaintext")
    }
}

impl SealPlaintext {
    fn new(dek: &SecretBytes32) -> Self {
        use base64::Engine;
        let mut key_b64 = Zeroizing::new(String::with_capacity(44));
        base64::engine::general_purpose::STANDARD.encode_string(dek.expose_secret(), &mut key_b64);
        Self {
            key_b64: std::sync::Arc::new(key_b64),
        }
    }

    /// `body` with the stand-in's base64 replaced by the key's.
    fn seal(&self, body: &[u8]) -> Result<Wiped, BoxError> {
        use base64::Engine;
        let stand_in = format!(
            "\"Plaintext\":\"{}\"",
            base64::engine::general_purpose::STANDARD.encode(STAND_IN)
        );
        let found: Vec<usize> = body
            .windows(stand_in.len())
            .enumerate()
            .filter(|(_, w)| *w == stand_in.as_bytes())
            .map(|(i, _)| i)
            .collect();
        let [at] = found[..] else {
            return Err(format!(
                "the Encrypt request holds its plaintext {} times, not once; not sending it",
                found.len()
            )
            .into());
        };
        let start = at + "\"Plaintext\":\"".len();
        let end = at + stand_in.len() - 1;
        let mut sealed = Zeroizing::new(Vec::with_capacity(body.len()));
        sealed.extend_from_slice(&body[..start]);
        sealed.extend_from_slice(self.key_b64.as_bytes());
        sealed.extend_from_slice(&body[end..]);
        Ok(Wiped(sealed))
    }
}

impl aws_sdk_kms::config::Intercept for SealPlaintext {
    fn name(&self) -> &'static str {
        "tcodec seal Encrypt plaintext"
    }

    fn modify_before_retry_loop(
        &self,
        context: &mut aws_sdk_kms::config::interceptors::BeforeTransmitInterceptorContextMut<'_>,
        _: &aws_sdk_kms::config::RuntimeComponents,
        _: &mut aws_sdk_kms::config::ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request_mut();
        let body = request
            .body()
            .bytes()
            .ok_or("the Encrypt request body is not in memory; not sending it")?;
        let sealed = self.seal(body)?;
        *request.body_mut() =
            aws_smithy_types::body::SdkBody::from(bytes::Bytes::from_owner(sealed));
        Ok(())
    }
}

impl KekProvider for AwsKmsKek {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn kek_ref(&self, key: Option<&str>) -> Result<KekRef, KekError> {
        let key = key
            .or(self.options.default_key.as_deref())
            .ok_or_else(|| KekError::Setup {
                provider: PROVIDER,
                reason: "no KMS key given for new data keys".into(),
            })?;
        Ok(KekRef {
            provider: PROVIDER.to_owned(),
            key: key.to_owned(),
        })
    }

    fn generate(
        &self,
        kek: &KekRef,
        ctx: &EncryptionContext,
    ) -> Result<(SecretBytes32, Vec<u8>), KekError> {
        self.permit(kek, ctx)?;
        let (key, context) = (kek.key.clone(), context_map(ctx));
        self.call("GenerateDataKey", ctx, move |client| {
            Box::pin(async move {
                let out = client
                    .generate_data_key()
                    .key_id(key)
                    .key_spec(DataKeySpec::Aes256)
                    .set_encryption_context(Some(context))
                    .send()
                    .await
                    .map_err(service_error)?;
                let mut out = out;
                Ok((
                    plaintext_key(out.plaintext.take())?,
                    ciphertext(out.ciphertext_blob.take())?,
                ))
            })
        })
        .map_err(|e| self.error("GenerateDataKey", kek, ctx, e))
    }

    fn wrap(
        &self,
        kek: &KekRef,
        dek: &SecretBytes32,
        ctx: &EncryptionContext,
    ) -> Result<Vec<u8>, KekError> {
        self.permit(kek, ctx)?;
        let (key, context) = (kek.key.clone(), context_map(ctx));
        // The SDK would copy the key into buffers it drops without wiping;
        // it gets a stand-in, and the body it sends is built and wiped here.
        let seal = SealPlaintext::new(dek);
        self.call("Encrypt", ctx, move |client| {
            Box::pin(async move {
                let out = client
                    .encrypt()
                    .key_id(key)
                    .plaintext(Blob::new(STAND_IN.to_vec()))
                    .set_encryption_context(Some(context))
                    .customize()
                    .interceptor(seal)
                    .send()
                    .await
                    .map_err(service_error)?;
                ciphertext(out.ciphertext_blob)
            })
        })
        .map_err(|e| self.error("Encrypt", kek, ctx, e))
    }

    fn unwrap(
        &self,
        kek: &KekRef,
        wrapped: &[u8],
        ctx: &EncryptionContext,
    ) -> Result<SecretBytes32, KekError> {
        self.permit(kek, ctx)?;
        let (key, context, blob) = (
            kek.key.clone(),
            context_map(ctx),
            Blob::new(wrapped.to_vec()),
        );
        self.call("Decrypt", ctx, move |client| {
            Box::pin(async move {
                let out = client
                    .decrypt()
                    .key_id(key)
                    .ciphertext_blob(blob)
                    .set_encryption_context(Some(context))
                    .send()
                    .await
                    .map_err(unwrap_error)?;
                plaintext_key(out.plaintext)
            })
        })
        .map_err(|e| self.error("Decrypt", kek, ctx, e))
    }

    fn rewrap(
        &self,
        from: &KekRef,
        wrapped: &[u8],
        to: &KekRef,
        ctx: &EncryptionContext,
    ) -> Result<Vec<u8>, KekError> {
        self.permit(from, ctx)?;
        self.permit(to, ctx)?;
        let (source, dest, context, blob) = (
            from.key.clone(),
            to.key.clone(),
            context_map(ctx),
            Blob::new(wrapped.to_vec()),
        );
        self.call("ReEncrypt", ctx, move |client| {
            Box::pin(async move {
                let out = client
                    .re_encrypt()
                    .ciphertext_blob(blob)
                    .source_key_id(source)
                    .set_source_encryption_context(Some(context.clone()))
                    .destination_key_id(dest)
                    .set_destination_encryption_context(Some(context))
                    .send()
                    .await
                    .map_err(unwrap_error)?;
                ciphertext(out.ciphertext_blob)
            })
        })
        .map_err(|e| self.error("ReEncrypt", from, ctx, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stand_in_body(times: usize) -> Vec<u8> {
        let field = "\"Plaintext\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"";
        let fields = vec![field; times].join(",");
        format!("{{\"KeyId\":\"alias/x\",{fields},\"EncryptionContext\":{{}}}}").into_bytes()
    }

    #[test]
    fn the_encrypt_body_gets_the_key_in_place_of_the_stand_in() {
        let seal = SealPlaintext::new(&SecretBytes32::new([0xab; 32]));
        let sealed = seal.seal(&stand_in_body(1)).unwrap();
        let text = std::str::from_utf8(sealed.as_ref()).unwrap();
        let json: serde_json::Value = serde_json::from_str(text).unwrap();
        use base64::Engine;
        let key = base64::engine::general_purpose::STANDARD
            .decode(json["Plaintext"].as_str().unwrap())
            .unwrap();
        assert_eq!(key, [0xab; 32]);
        assert_eq!(json["KeyId"], "alias/x");
        assert_eq!(sealed.as_ref().len(), stand_in_body(1).len());
        assert_eq!(format!("{seal:?}"), "SealPlaintext");
    }

    #[test]
    fn a_body_without_exactly_one_stand_in_is_not_sent() {
        let seal = SealPlaintext::new(&SecretBytes32::new([0xab; 32]));
        for times in [0, 2] {
            let err = seal.seal(&stand_in_body(times)).err().unwrap().to_string();
            assert!(err.contains("not sending it"), "{err}");
        }
    }
}
