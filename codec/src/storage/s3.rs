//! Amazon S3 (or an S3-compatible store) under a [`StorageConfig`]: fetch
//! what a reference names, once the configuration permits it, and store
//! sealed payloads under keys their SHA-256 derives.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};

use super::{Quoted, Reference, S3Location, StorageConfig, StorageError, open_hashed};
use crate::payload::Payload;

/// Objects [`S3Store::fetch_each`] fetches, and [`S3Store::put_each`] stores, at once.
pub const FETCH_CONCURRENCY: usize = 4;

/// How to reach the store. Credentials come from the AWS default chain
/// (environment, profile, SSO, instance or task role).
#[derive(Debug, Clone, Default)]
pub struct S3Options {
    /// An endpoint URL other than AWS's (a VPC endpoint, an S3-compatible
    /// server); requests then use path-style addressing.
    pub endpoint: Option<String>,
    /// The region; without one, the AWS chain's, else `us-east-1`.
    pub region: Option<String>,
    /// Per-operation timeout (default 30 s).
    pub timeout: Option<Duration>,
}

/// An External Storage environment variable that is not usable.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {message}")]
pub struct EnvError {
    /// The variable.
    pub variable: &'static str,
    /// What is wrong.
    pub message: String,
}

/// One bucket under one configuration. The client is set up (the AWS
/// configuration loaded) on first use.
#[derive(Clone)]
pub struct S3Store {
    client: std::sync::Arc<tokio::sync::OnceCell<Client>>,
    options: S3Options,
    config: StorageConfig,
}

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Store")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl S3Store {
    /// A store for `config`, its client to be set up from `options` and the
    /// AWS default chain. Makes no request.
    pub fn new(config: StorageConfig, options: S3Options) -> Self {
        Self {
            client: Default::default(),
            options,
            config,
        }
    }

    /// External Storage as a worker's or client's environment names it (the
    /// Rust worker and the Node package read it here): `TCODEC_STORAGE_BUCKET`
    /// turns it on (`None` without it); `TCODEC_STORAGE_PREFIX` (default
    /// `v0/ns/<TEMPORAL_NAMESPACE or default>/`, where the official S3 drivers
    /// write), `TCODEC_STORAGE_ENDPOINT`, `TCODEC_STORAGE_REGION` and
    /// `TCODEC_STORAGE_THRESHOLD` (bytes, default [`super::DEFAULT_THRESHOLD`])
    /// refine it. Empty variables count as unset. Credentials come from the
    /// AWS default chain. Makes no request.
    pub fn from_env() -> Result<Option<Self>, EnvError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// [`S3Store::from_env`] over `var`, which looks a variable up.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, EnvError> {
        let var = |name: &str| var(name).filter(|v| !v.is_empty());
        let Some(bucket) = var("TCODEC_STORAGE_BUCKET") else {
            return Ok(None);
        };
        let namespace = var("TEMPORAL_NAMESPACE").unwrap_or_else(|| "default".to_owned());
        let mut config = StorageConfig::new(bucket, &namespace);
        if let Some(prefix) = var("TCODEC_STORAGE_PREFIX") {
            config.prefix = prefix;
        }
        if let Some(threshold) = var("TCODEC_STORAGE_THRESHOLD") {
            config.threshold = threshold.trim().parse().map_err(|_| EnvError {
                variable: "TCODEC_STORAGE_THRESHOLD",
                message: format!("\"{}\" is not a number of bytes", Quoted(&threshold)),
            })?;
        }
        let options = S3Options {
            endpoint: var("TCODEC_STORAGE_ENDPOINT"),
            region: var("TCODEC_STORAGE_REGION"),
            timeout: None,
        };
        Ok(Some(Self::new(config, options)))
    }

    async fn client(&self) -> &Client {
        self.client.get_or_init(|| connect(&self.options)).await
    }

    /// The configuration.
    pub fn config(&self) -> &StorageConfig {
        &self.config
    }

    /// Where the reference at `index` points, if the configuration permits
    /// it; no request is made.
    pub fn permit(&self, index: usize, reference: &Reference) -> Result<S3Location, StorageError> {
        self.config.permit(index, reference)
    }

    /// Where each reference points, every one checked against the
    /// configuration before any request is made; the first refused is the
    /// error.
    pub fn permit_all<'a>(
        &self,
        references: impl IntoIterator<Item = (usize, &'a Reference)>,
    ) -> Result<Vec<(usize, S3Location)>, StorageError> {
        references
            .into_iter()
            .map(|(index, reference)| Ok((index, self.permit(index, reference)?)))
            .collect()
    }

    /// Fetches the payloads `locations` name (each from [`permit`](Self::permit)),
    /// by payload index, each object checked against its reference's SHA-256
    /// (computed as it arrives, into one buffer of its announced size) and read
    /// as a payload: each distinct object once however many references name
    /// it, [`FETCH_CONCURRENCY`] at a time, and no more than `budget` bytes
    /// fetched, nor in all the payloads returned (counted once for each
    /// reference). `observe` sees each fetch as it ends: where, how long, and
    /// the object's size or the error. The first error ends the call.
    pub async fn fetch_each(
        &self,
        locations: &[(usize, S3Location)],
        budget: usize,
        observe: impl Fn(&S3Location, Duration, Result<usize, &StorageError>),
    ) -> Result<BTreeMap<usize, Payload>, StorageError> {
        self.fetch_each_as(locations, budget, observe, open_hashed)
            .await
    }

    /// [`fetch_each`](Self::fetch_each) giving each payload as the object's
    /// bytes (its serialized form), checked as `fetch_each` checks them, for
    /// a caller that passes payloads on serialized: no second serialization.
    pub async fn fetch_each_serialized(
        &self,
        locations: &[(usize, S3Location)],
        budget: usize,
        observe: impl Fn(&S3Location, Duration, Result<usize, &StorageError>),
    ) -> Result<BTreeMap<usize, Bytes>, StorageError> {
        self.fetch_each_as(
            locations,
            budget,
            observe,
            |index, location, object, digest| {
                // Parsing a payload out of `Bytes` shares its buffer: a check, not a copy.
                open_hashed(index, location, object.clone(), digest)?;
                Ok(object)
            },
        )
        .await
    }

    async fn fetch_each_as<T: Clone>(
        &self,
        locations: &[(usize, S3Location)],
        budget: usize,
        observe: impl Fn(&S3Location, Duration, Result<usize, &StorageError>),
        open: impl Fn(usize, &S3Location, Bytes, &[u8]) -> Result<T, StorageError>,
    ) -> Result<BTreeMap<usize, T>, StorageError> {
        // Each object's first index (errors name it) and how many name it.
        let mut uses: BTreeMap<&S3Location, (usize, usize)> = BTreeMap::new();
        for (index, location) in locations {
            uses.entry(location).or_insert((*index, 0)).1 += 1;
        }
        // Owned, so the futures below borrow nothing of their argument.
        let distinct: Vec<(S3Location, usize)> =
            uses.iter().map(|(l, (i, _))| ((*l).clone(), *i)).collect();
        let (fetched_bytes, observe, open) = (&AtomicUsize::new(0), &observe, &open);
        let mut objects: BTreeMap<S3Location, (T, usize)> = stream::iter(distinct)
            .map(|(location, index)| async move {
                let started = Instant::now();
                let result = self
                    .get(index, &location)
                    .await
                    .and_then(|(object, digest)| {
                        let size = object.len();
                        Ok((open(index, &location, object, digest.as_ref())?, size))
                    });
                observe(
                    &location,
                    started.elapsed(),
                    result.as_ref().map(|(_, n)| *n),
                );
                let (opened, size) = result?;
                if fetched_bytes.fetch_add(size, Ordering::Relaxed) + size > budget {
                    return Err(StorageError::OverBudget { index, budget });
                }
                Ok((location, (opened, size)))
            })
            .buffered(FETCH_CONCURRENCY)
            .try_collect()
            .await?;
        let mut payloads = BTreeMap::new();
        let mut decoded = 0usize;
        for (index, location) in locations {
            let Some((opened, size)) = objects.get(location) else {
                continue;
            };
            decoded += size;
            if decoded > budget {
                return Err(StorageError::OverBudget {
                    index: *index,
                    budget,
                });
            }
            // The last use takes the payload, so a single use is not copied.
            let left = uses.get_mut(location).map(|u| {
                u.1 -= 1;
                u.1
            });
            let opened = match left {
                Some(0) => objects.remove(location).map(|(p, _)| p),
                _ => Some(opened.clone()),
            };
            payloads.extend(opened.map(|p| (*index, p)));
        }
        Ok(payloads)
    }

    /// The object's bytes, bounded by the configured maximum, and their SHA-256.
    pub async fn get(
        &self,
        index: usize,
        location: &S3Location,
    ) -> Result<(Bytes, ring::digest::Digest), StorageError> {
        let limit = self.config.max_object_bytes;
        let output = self
            .client()
            .await
            .get_object()
            .bucket(&location.bucket)
            .key(&location.key)
            .send()
            .await
            .map_err(|e| classify(index, location, e))?;
        let announced = output
            .content_length()
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(0);
        if announced > limit {
            return Err(StorageError::TooLarge { index, limit });
        }
        let mut body = output.body;
        let mut object = Vec::with_capacity(announced);
        let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
        while let Some(chunk) = body
            .try_next()
            .await
            .map_err(|e| StorageError::Unavailable {
                index,
                reason: format!("reading the object: {e}"),
            })?
        {
            if object.len() + chunk.len() > limit {
                return Err(StorageError::TooLarge { index, limit });
            }
            hash.update(&chunk);
            object.extend_from_slice(&chunk);
        }
        Ok((Bytes::from(object), hash.finish()))
    }

    /// Stores each `(index, location, object)` ([`put`](Self::put), the
    /// location from [`StorageConfig::locate`]), [`FETCH_CONCURRENCY`] at a
    /// time. `observe` sees each write as it ends: where, how long, and the
    /// object's size or the error. The first error ends the call.
    pub async fn put_each(
        &self,
        objects: Vec<(usize, S3Location, Bytes)>,
        observe: impl Fn(&S3Location, Duration, Result<usize, &StorageError>),
    ) -> Result<(), StorageError> {
        let observe = &observe;
        stream::iter(objects)
            .map(|(index, location, object)| async move {
                let (started, size) = (Instant::now(), object.len());
                let result = self.put(index, &location, object).await;
                observe(&location, started.elapsed(), result.as_ref().map(|()| size));
                result
            })
            .buffer_unordered(FETCH_CONCURRENCY)
            .try_collect()
            .await
    }

    /// Stores `object` at `location` unless an object is there already (the
    /// key derives from the content, so it is the same object): a conditional
    /// write, so a retry or a second worker never rewrites it.
    pub async fn put(
        &self,
        index: usize,
        location: &S3Location,
        object: Bytes,
    ) -> Result<(), StorageError> {
        let result = self
            .client()
            .await
            .put_object()
            .bucket(&location.bucket)
            .key(&location.key)
            .if_none_match("*")
            .content_type("application/x-protobuf")
            .body(ByteStream::from(object))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e))
                if matches!(e.raw().status().as_u16(), 412 | 409)
                    || e.err().code() == Some("PreconditionFailed") =>
            {
                Ok(())
            }
            Err(e) => Err(classify(index, location, e)),
        }
    }
}

/// The S3 client `options` and the AWS default chain describe.
async fn connect(options: &S3Options) -> Client {
    let timeout = options.timeout.unwrap_or(Duration::from_secs(30));
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .operation_timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(3)))
        .build();
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(timeouts)
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(3));
    if let Some(region) = &options.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    let shared = loader.load().await;
    // Every object read is checked against its reference's SHA-256, which
    // the SDK's own response checksum (a CRC of the same bytes) would only
    // repeat; writes keep theirs, so S3 refuses an upload damaged on the way.
    let mut builder = aws_sdk_s3::config::Builder::from(&shared)
        .response_checksum_validation(aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired);
    if shared.region().is_none() {
        builder = builder.region(aws_config::Region::new("us-east-1"));
    }
    if let Some(url) = &options.endpoint {
        builder = builder.endpoint_url(url).force_path_style(true);
    }
    Client::from_conf(builder.build())
}

/// An SDK error as a storage error: a missing object, an unreachable or
/// failing store (5xx, timeouts: worth retrying), or a refusal.
fn classify<E>(
    index: usize,
    location: &S3Location,
    error: SdkError<E, HttpResponse>,
) -> StorageError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match &error {
        SdkError::ServiceError(e) => {
            let status = e.raw().status().as_u16();
            let code = e.err().code().unwrap_or("unknown");
            if code == "NoSuchKey" || status == 404 {
                return StorageError::Missing {
                    index,
                    bucket: location.bucket.clone(),
                    key: location.key.clone(),
                };
            }
            let reason = format!("{code} (HTTP {status})");
            if status >= 500 {
                StorageError::Unavailable { index, reason }
            } else {
                StorageError::Failed { index, reason }
            }
        }
        SdkError::TimeoutError(_) => StorageError::Unavailable {
            index,
            reason: "no answer in time".into(),
        },
        SdkError::DispatchFailure(e) => StorageError::Unavailable {
            index,
            reason: if e.is_timeout() {
                "no answer in time".into()
            } else if e.is_io() {
                "cannot connect".into()
            } else {
                "the request could not be sent".into()
            },
        },
        _ => StorageError::Unavailable {
            index,
            reason: tcodec_keys::display_chain(&error),
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::storage::DEFAULT_THRESHOLD;

    #[test]
    fn the_environment_names_the_store_its_prefix_and_threshold() {
        let from = |vars: &[(&str, &str)]| {
            let vars: Vec<(String, String)> = vars
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            S3Store::from_vars(move |name| {
                vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
            })
        };
        assert!(from(&[]).unwrap().is_none());
        assert!(from(&[("TCODEC_STORAGE_BUCKET", "")]).unwrap().is_none());
        let store = from(&[
            ("TCODEC_STORAGE_BUCKET", "payloads"),
            ("TEMPORAL_NAMESPACE", "payments"),
        ])
        .unwrap()
        .unwrap();
        let config = store.config();
        assert_eq!(
            (
                config.bucket.as_str(),
                config.prefix.as_str(),
                config.threshold
            ),
            ("payloads", "v0/ns/payments/", DEFAULT_THRESHOLD)
        );
        let store = from(&[
            ("TCODEC_STORAGE_BUCKET", "payloads"),
            ("TCODEC_STORAGE_PREFIX", "tcodec/"),
            ("TCODEC_STORAGE_THRESHOLD", "65536"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            (store.config().prefix.as_str(), store.config().threshold),
            ("tcodec/", 65536)
        );
        let err = from(&[
            ("TCODEC_STORAGE_BUCKET", "payloads"),
            ("TCODEC_STORAGE_THRESHOLD", "64k\u{1b}[2J"),
        ])
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "TCODEC_STORAGE_THRESHOLD: \"64k\\u{1b}[2J\" is not a number of bytes"
        );
    }
}
