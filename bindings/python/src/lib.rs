//! `tcodec._native`: the Rust codec, keyring and KEKs for Python workers.
//!
//! The Python package (`bindings/python/python/tcodec`) wraps this module:
//! `tcodec.Keyring`, `tcodec.Codec`, and `tcodec.temporal.PayloadCodec` for
//! the Temporal Python SDK. Payloads cross the boundary serialized
//! (`temporal.api.common.v1.Payload` bytes), a whole batch at once, and the
//! codec runs with the GIL released.

use std::path::PathBuf;
use std::sync::Arc;

use prost::Message;
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use tcodec::{
    Codec as RustCodec, CodecOptions, Compression, DecodePolicy, Decoded, Payload, PayloadParts,
    PayloadView, available_threads,
};
use tcodec_keys::kek::KekSettings;
use tcodec_keys::{FileKeyring, WATCH_INTERVAL, Watcher, display_chain, keyring_path_from_env};

create_exception!(
    _native,
    CodecError,
    PyException,
    "A batch could not be encoded or decoded, or a keyring not opened. The message names the payload's index and the key id, never key material or payload contents."
);

fn error(e: &dyn std::error::Error) -> PyErr {
    CodecError::new_err(display_chain(e))
}

/// A keyring file, reloaded when it changes, with its KEKs.
#[pyclass(frozen, module = "tcodec._native")]
struct Keyring {
    ring: FileKeyring,
    _watcher: Arc<Watcher>,
}

impl Keyring {
    fn with(path: PathBuf, settings: &KekSettings) -> PyResult<Self> {
        let ring = FileKeyring::open_with_settings(&path, settings).map_err(|e| error(&e))?;
        let watcher = ring.watch(WATCH_INTERVAL);
        Ok(Self {
            ring,
            _watcher: Arc::new(watcher),
        })
    }
}

#[pymethods]
impl Keyring {
    /// Opens the keyring file at `path`. KEKs: the local master key from
    /// `master_key_file` (else `TCODEC_MASTER_KEY`), AWS KMS through the AWS
    /// configuration chain (or `kms_endpoint`, `kms_region`), allowed only for
    /// the KMS keys `kms_keys` lists.
    #[staticmethod]
    #[pyo3(signature = (path, *, master_key_file=None, kms_keys=None, kms_endpoint=None, kms_region=None))]
    fn open(
        path: PathBuf,
        master_key_file: Option<PathBuf>,
        kms_keys: Option<Vec<String>>,
        kms_endpoint: Option<String>,
        kms_region: Option<String>,
    ) -> PyResult<Self> {
        let settings = KekSettings {
            master_key_file,
            kms_endpoint,
            kms_region,
            kms_keys: kms_keys.unwrap_or_default(),
        };
        Self::with(path, &settings)
    }

    /// Opens the keyring the environment names, as the Rust worker does:
    /// `TCODEC_KEYRING`, `TCODEC_MASTER_KEY_FILE` or `TCODEC_MASTER_KEY`,
    /// `TCODEC_KMS_KEYS`, and the AWS configuration chain.
    #[staticmethod]
    fn from_env() -> PyResult<Self> {
        let path = keyring_path_from_env().ok_or_else(|| {
            CodecError::new_err("no keyring: set TCODEC_KEYRING to the keyring file's path")
        })?;
        Self::with(path, &KekSettings::from_env())
    }

    /// The keyring's name.
    #[getter]
    fn name(&self) -> String {
        self.ring.document().name().to_owned()
    }

    /// The keyring document's revision in use.
    #[getter]
    fn revision(&self) -> u64 {
        self.ring.document().revision()
    }

    /// The id of the key that encrypts new payloads.
    #[getter]
    fn primary(&self) -> Option<String> {
        self.ring.document().primary().map(|k| k.id.to_string())
    }

    /// Re-reads the file if it changed; returns whether it did. (A watcher
    /// also does this every 2 seconds.)
    fn reload(&self) -> PyResult<bool> {
        self.ring.reload().map_err(|e| error(&e))
    }

    fn __repr__(&self) -> String {
        let doc = self.ring.document();
        format!(
            "Keyring(path={:?}, name={:?}, revision={})",
            self.ring.path().display().to_string(),
            doc.name(),
            doc.revision()
        )
    }
}

/// The codec over a keyring: encode and decode batches of serialized payloads.
#[pyclass(frozen, module = "tcodec._native")]
struct Codec {
    codec: Arc<RustCodec>,
    /// The same codec over the keyring's in-memory view: it never waits on a
    /// KMS, so a small batch can run on the caller's thread (see `try_encode`).
    inline: Arc<RustCodec>,
    keyring: Py<Keyring>,
}

fn parse(index: usize, bytes: &[u8]) -> PyResult<Payload> {
    Payload::decode(bytes).map_err(|_| {
        CodecError::new_err(format!("payload {index}: not a serialized Payload message"))
    })
}

#[pymethods]
impl Codec {
    /// A codec over `keyring`. `decode_allow` names the decode policy's
    /// exceptions as `TCODEC_DECODE_ALLOW` does (comma separated: plaintext
    /// encodings, `*`, `binary/encrypted`, `binary/zlib`); empty, the default,
    /// refuses every payload tcodec did not seal. `compression` turns zstd off
    /// where a length side channel matters. `threads`: the most threads the
    /// encoding (with compression) of one batch of 256 KiB or more is split
    /// across (default: as many as the process may run at once; 1 keeps every
    /// batch on one thread).
    #[new]
    #[pyo3(signature = (keyring, *, decode_allow="", compression=true, threads=None))]
    fn new(
        keyring: Py<Keyring>,
        decode_allow: &str,
        compression: bool,
        threads: Option<usize>,
    ) -> Self {
        let mut options = CodecOptions::default()
            .with_decode_policy(DecodePolicy::from_allow_list(decode_allow))
            .with_threads(threads.unwrap_or_else(available_threads));
        if !compression {
            options = options.with_compression(Compression::Off);
        }
        let ring = keyring.get().ring.clone();
        Self {
            inline: Arc::new(RustCodec::with_options(
                Arc::new(ring.in_memory()),
                options.clone(),
            )),
            codec: Arc::new(RustCodec::with_options(Arc::new(ring), options)),
            keyring,
        }
    }

    /// The codec the environment names: [`Keyring::from_env`] and
    /// `TCODEC_DECODE_ALLOW`.
    #[staticmethod]
    fn from_env(py: Python<'_>) -> PyResult<Self> {
        let keyring = Py::new(py, Keyring::from_env()?)?;
        let allow = std::env::var("TCODEC_DECODE_ALLOW").unwrap_or_default();
        Ok(Self::new(keyring, &allow, true, None))
    }

    /// The keyring.
    #[getter]
    fn keyring(&self, py: Python<'_>) -> Py<Keyring> {
        self.keyring.clone_ref(py)
    }

    /// Seals a batch of serialized payloads; returns the sealed payloads,
    /// serialized, in order.
    fn encode<'py>(
        &self,
        py: Python<'py>,
        payloads: Vec<Bound<'py, PyBytes>>,
    ) -> PyResult<Vec<Bound<'py, PyBytes>>> {
        self.run(py, payloads, Op::Encode)
    }

    /// Decodes a batch of serialized payloads; returns them decoded,
    /// serialized, in order. All or nothing: the first failing payload fails
    /// the batch, naming its index.
    fn decode<'py>(
        &self,
        py: Python<'py>,
        payloads: Vec<Bound<'py, PyBytes>>,
    ) -> PyResult<Vec<Bound<'py, PyBytes>>> {
        self.run(py, payloads, Op::Decode)
    }

    /// Like `encode`, with the keys already in memory only: `None` when the
    /// batch needs a key unwrapped (a KMS call), which `encode` would wait
    /// for. Cheap enough to call on an event loop for a small batch.
    fn try_encode<'py>(
        &self,
        py: Python<'py>,
        payloads: Vec<Bound<'py, PyBytes>>,
    ) -> PyResult<Option<Vec<Bound<'py, PyBytes>>>> {
        self.run_inline(py, payloads, Op::Encode)
    }

    /// Like `decode`, with the keys already in memory only: `None` when the
    /// batch needs a key unwrapped, which `decode` would wait for.
    fn try_decode<'py>(
        &self,
        py: Python<'py>,
        payloads: Vec<Bound<'py, PyBytes>>,
    ) -> PyResult<Option<Vec<Bound<'py, PyBytes>>>> {
        self.run_inline(py, payloads, Op::Decode)
    }
}

/// A batch's work.
#[derive(Clone, Copy)]
enum Op {
    /// `Codec::encode_serialized`: Python's serialized payloads are sealed
    /// as they are, read where they lie.
    Encode,
    /// A `Decoder` over the batch: each payload's metadata read where it lies
    /// in Python's bytes, its data copied once into one buffer for the batch
    /// and opened there; a payload opened to a plain one is handed back as
    /// the bytes it was sealed from (see [`opened`]).
    Decode,
}

/// A batch's result, each payload either serialized in `buffer` or whole.
struct Done {
    buffer: Vec<u8>,
    payloads: Vec<Out>,
}

enum Out {
    /// Serialized, at this range of [`Done::buffer`].
    At(std::ops::Range<usize>),
    Whole(Payload),
}

impl Codec {
    fn run<'py>(
        &self,
        py: Python<'py>,
        payloads: Vec<Bound<'py, PyBytes>>,
        op: Op,
    ) -> PyResult<Vec<Bound<'py, PyBytes>>> {
        let done = batch(py, &self.codec, &payloads, op)?.map_err(|e| error(&e))?;
        serialize(py, &done)
    }

    fn run_inline<'py>(
        &self,
        py: Python<'py>,
        payloads: Vec<Bound<'py, PyBytes>>,
        op: Op,
    ) -> PyResult<Option<Vec<Bound<'py, PyBytes>>>> {
        match batch(py, &self.inline, &payloads, op)? {
            Ok(done) => serialize(py, &done).map(Some),
            Err(e) if e.is_deferred() => Ok(None),
            Err(e) => Err(error(&e)),
        }
    }
}

/// Runs `op` without the GIL (parsing, the codec, and any KMS call
/// included). The outer error is a payload to decode that does not parse.
fn batch(
    py: Python<'_>,
    codec: &RustCodec,
    payloads: &[Bound<'_, PyBytes>],
    op: Op,
) -> PyResult<Result<Done, tcodec::CodecError>> {
    let payloads: Vec<&[u8]> = payloads.iter().map(|b| b.as_bytes()).collect();
    py.detach(move || match op {
        Op::Encode => Ok(codec.encode_serialized(&payloads).map(|sealed| Done {
            buffer: Vec::new(),
            payloads: sealed.into_iter().map(Out::Whole).collect(),
        })),
        Op::Decode => opened(codec, &payloads),
    })
}

/// Decodes a batch of serialized payloads as `Codec::decode` would. Payloads
/// in the shape SDKs write are read in place ([`PayloadView`]) and their data
/// opened in one buffer; when what was sealed is a plain payload, its bytes
/// there are the answer, with no parse and no serialization. Others (more
/// metadata than a view holds, External Storage details) are parsed whole.
fn opened(codec: &RustCodec, payloads: &[&[u8]]) -> PyResult<Result<Done, tcodec::CodecError>> {
    let views: Vec<Option<PayloadView<'_>>> =
        payloads.iter().map(|b| PayloadView::parse(b)).collect();
    let mut buffer: Vec<u8> =
        Vec::with_capacity(views.iter().flatten().map(|v| v.data().len()).sum());
    for view in views.iter().flatten() {
        buffer.extend_from_slice(view.data());
    }
    let (base, filled) = (buffer.as_ptr() as usize, buffer.len());
    let mut rest: &mut [u8] = &mut buffer;
    let mut decoder = codec.decoder();
    let mut out = Vec::with_capacity(payloads.len());
    for (index, (bytes, view)) in payloads.iter().zip(&views).enumerate() {
        let decoded = match view {
            Some(view) => {
                let (data, tail) = std::mem::take(&mut rest).split_at_mut(view.data().len());
                rest = tail;
                let parts = PayloadParts {
                    metadata: view.metadata(),
                    external_payloads: &[],
                };
                decoder
                    .decode_in_place(index, parts, data)
                    .map(|d| match d {
                        // Opened in `buffer`, where its bytes stay; anything else
                        // (not expected) is copied out.
                        Decoded::View(plain) => {
                            let len = plain.serialized().len();
                            match (plain.serialized().as_ptr() as usize).checked_sub(base) {
                                Some(start) if start + len <= filled => Out::At(start..start + len),
                                _ => Out::Whole(plain.to_payload()),
                            }
                        }
                        Decoded::Owned(payload) => Out::Whole(payload),
                    })
            }
            None => decoder
                .decode_payload(index, parse(index, bytes)?)
                .map(Out::Whole),
        };
        match decoded {
            Ok(o) => out.push(o),
            Err(e) => return Ok(Err(e)),
        }
    }
    Ok(Ok(Done {
        buffer,
        payloads: out,
    }))
}

/// Serializes each payload straight into a new Python `bytes` (no copy in
/// between), or copies its bytes from the batch's buffer.
fn serialize<'py>(py: Python<'py>, done: &Done) -> PyResult<Vec<Bound<'py, PyBytes>>> {
    done.payloads
        .iter()
        .map(|out| match out {
            Out::At(range) => Ok(PyBytes::new(py, &done.buffer[range.clone()])),
            Out::Whole(p) => PyBytes::new_with(py, p.encoded_len(), |mut buf: &mut [u8]| {
                p.encode(&mut buf)
                    .map_err(|e| CodecError::new_err(format!("cannot serialize a payload: {e}")))
            }),
        })
        .collect()
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Keyring>()?;
    m.add_class::<Codec>()?;
    m.add("CodecError", m.py().get_type::<CodecError>())?;
    Ok(())
}
