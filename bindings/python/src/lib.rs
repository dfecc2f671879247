//! `tcodec._native`: the Rust codec, keyring and KEKs for Python workers.
//!
//! The Python package (`bindings/python/python/tcodec`) wraps this module:
//! `tcodec.Keyring`, `tcodec.Codec`, and `tcodec.temporal.PayloadCodec` for
//! the Temporal Python SDK. A whole batch crosses the boundary at once, as
//! `temporal.api.common.v1.Payload` messages (what the `PayloadCodec` passes)
//! or serialized, and is worked through in steps of about [`CHUNK_BYTES`],
//! the codec running with the GIL released.

use std::path::PathBuf;
use std::sync::Arc;

use prost::Message;
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyList, PyType};
use tcodec::{
    Codec as RustCodec, CodecOptions, Compression, DecodePolicy, Decoded, Encoder, Payload,
    PayloadParts, PayloadView, Prepared, available_threads,
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
    /// Whether an encode may compress across threads: see [`CHUNK_BYTES`].
    splits: bool,
    /// The first message class answered in, and its `FromString` (looked
    /// up once rather than once a call): see [`Codec::parser`].
    parser: PyOnceLock<(Py<PyType>, Py<PyAny>)>,
}

/// A batch is worked through in steps of about this many serialized bytes
/// (at least one payload each): a step's payloads are opened or sealed with
/// the GIL released and its answers made (and parsed, for messages) before
/// the next step starts, so the step's bytes are still in the core's cache
/// when they are read again. Measured (BENCHMARKS.md): 100 payloads of 64 KiB
/// without compression, 28,600 a second decoded in one step, 40,800 in steps
/// of 256 KiB; in Python, steps of 512 KiB gained less. An encode that
/// compresses and may split across threads takes the rest of the batch in one
/// step when the step's first payload is one zstd will be tried on (split a
/// step at a time, the threads met once a step and the same batch was 16-30%
/// slower than in one).
const CHUNK_BYTES: usize = 256 << 10;

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
        let threads = threads.unwrap_or_else(available_threads);
        let mut options = CodecOptions::default()
            .with_decode_policy(DecodePolicy::from_allow_list(decode_allow))
            .with_threads(threads);
        if !compression {
            options = options.with_compression(Compression::Off);
        }
        let ring = keyring.get().ring.clone();
        Self {
            splits: compression && threads > 1,
            inline: Arc::new(RustCodec::with_options(
                Arc::new(ring.in_memory()),
                options.clone(),
            )),
            codec: Arc::new(RustCodec::with_options(Arc::new(ring), options)),
            keyring,
            parser: PyOnceLock::new(),
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

    /// Seals a batch, in order: `Payload` messages (`temporalio`'s, or
    /// anything with `SerializeToString` whose class has `FromString`) come
    /// back as sealed messages of the first one's class; serialized payloads
    /// (`bytes`) as serialized sealed payloads. Either way the batch is worked
    /// through in steps (see [`CHUNK_BYTES`]).
    fn encode<'py>(
        &self,
        py: Python<'py>,
        payloads: &Bound<'py, PyAny>,
    ) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let payloads = batch(payloads)?;
        done(self.run(py, &self.codec, Items::of(&payloads), Op::Encode, None))
    }

    /// Decodes a batch as `encode` takes one, answering in the same kind.
    /// All or nothing: the first failing payload fails the batch, naming its
    /// index.
    fn decode<'py>(
        &self,
        py: Python<'py>,
        payloads: &Bound<'py, PyAny>,
    ) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let payloads = batch(payloads)?;
        done(self.run(py, &self.codec, Items::of(&payloads), Op::Decode, None))
    }

    /// Like `encode`, with the keys already in memory only and at most
    /// `max_bytes` of serialized payloads: `None` when the batch needs a key
    /// unwrapped (a KMS call, which `encode` would wait for) or is larger
    /// (known only as its steps are serialized, so some of it may have been
    /// sealed for nothing). Cheap enough to call on an event loop for a small
    /// batch; for `None`, run `encode` off the loop.
    #[pyo3(signature = (payloads, max_bytes=None))]
    fn try_encode<'py>(
        &self,
        py: Python<'py>,
        payloads: &Bound<'py, PyAny>,
        max_bytes: Option<usize>,
    ) -> PyResult<Option<Vec<Bound<'py, PyAny>>>> {
        let payloads = batch(payloads)?;
        let items = Items::of(&payloads);
        inline(self.run(py, &self.inline, items, Op::Encode, max_bytes))
    }

    /// Like `decode`, as `try_encode` is to `encode`.
    #[pyo3(signature = (payloads, max_bytes=None))]
    fn try_decode<'py>(
        &self,
        py: Python<'py>,
        payloads: &Bound<'py, PyAny>,
        max_bytes: Option<usize>,
    ) -> PyResult<Option<Vec<Bound<'py, PyAny>>>> {
        let payloads = batch(payloads)?;
        let items = Items::of(&payloads);
        inline(self.run(py, &self.inline, items, Op::Decode, max_bytes))
    }
}

/// The batch's items: a list read by index (the common case, and the
/// cheapest), any other sequence (the SDK's repeated field) as PyO3 reads
/// one. A `str` is refused, as a batch of characters would make no sense.
fn batch<'py>(payloads: &Bound<'py, PyAny>) -> PyResult<Vec<Bound<'py, PyAny>>> {
    match payloads.cast::<PyList>() {
        Ok(list) => Ok(list.iter().collect()),
        Err(_) => payloads.extract(),
    }
}

/// A batch as Python passes it.
#[derive(Clone, Copy)]
enum Items<'a, 'py> {
    /// Serialized payloads, answered serialized.
    Serialized(&'a [Bound<'py, PyAny>]),
    /// Payload messages, serialized a step at a time and answered as
    /// messages of the first one's class (`FromString`).
    Messages(&'a [Bound<'py, PyAny>]),
}

impl<'a, 'py> Items<'a, 'py> {
    /// Serialized payloads when the first is `bytes`, messages otherwise.
    fn of(payloads: &'a [Bound<'py, PyAny>]) -> Self {
        match payloads.first() {
            Some(first) if !first.is_instance_of::<PyBytes>() => Items::Messages(payloads),
            _ => Items::Serialized(payloads),
        }
    }

    fn len(&self) -> usize {
        match self {
            Items::Serialized(items) => items.len(),
            Items::Messages(items) => items.len(),
        }
    }

    fn serialized(&self, index: usize) -> PyResult<Bound<'py, PyBytes>> {
        match self {
            Items::Serialized(items) => Ok(items[index].cast::<PyBytes>()?.clone()),
            Items::Messages(items) => Ok(items[index]
                .call_method0(intern!(items[index].py(), "SerializeToString"))?
                .cast_into::<PyBytes>()?),
        }
    }
}

/// Why a batch has no answer: an exception (Python's, or the codec's as a
/// `CodecError`), or it is not for the inline path.
enum Stop {
    Py(PyErr),
    Codec(tcodec::CodecError),
    TooLarge,
}

impl From<PyErr> for Stop {
    fn from(e: PyErr) -> Self {
        Stop::Py(e)
    }
}

fn done<T>(done: Result<T, Stop>) -> PyResult<T> {
    match done {
        Ok(done) => Ok(done),
        Err(Stop::Py(e)) => Err(e),
        Err(Stop::Codec(e)) => Err(error(&e)),
        // Only the inline path passes a bound; this is for completeness.
        Err(Stop::TooLarge) => Err(CodecError::new_err("the batch is over its bound")),
    }
}

/// The inline codec's answer: a key it would have to unwrap, or a batch over
/// its bound, is `None`.
fn inline<T>(done: Result<T, Stop>) -> PyResult<Option<T>> {
    match done {
        Ok(done) => Ok(Some(done)),
        Err(Stop::Codec(e)) if e.is_deferred() => Ok(None),
        Err(Stop::TooLarge) => Ok(None),
        Err(Stop::Py(e)) => Err(e),
        Err(Stop::Codec(e)) => Err(error(&e)),
    }
}

/// A batch's work.
#[derive(Clone, Copy)]
enum Op {
    /// `Codec::encode_serialized`: Python's serialized payloads are sealed
    /// as they are, read where they lie.
    Encode,
    /// A `Decoder` over the batch: each payload's metadata read where it lies
    /// in Python's bytes, its data copied once into one buffer for the step
    /// and opened there; a payload opened to a plain one is handed back as
    /// the bytes it was sealed from (see [`opened`]).
    Decode,
}

/// A step's result, each payload serialized in `buffer`, whole, or to be
/// sealed into its answer by `encoder`.
struct Done<'b, 'c> {
    buffer: Vec<u8>,
    payloads: Vec<Out<'b>>,
    encoder: Option<Encoder<'c>>,
}

enum Out<'b> {
    /// Serialized, at this range of [`Done::buffer`].
    At(std::ops::Range<usize>),
    Whole(Payload),
    /// Compressed (if that paid) and measured, to be sealed straight into
    /// the answer's `bytes` (see [`SEAL_INTO_BYTES`]).
    Sealing(Prepared<'b>),
}

/// A payload of this many serialized bytes or more, encoded on one thread, is
/// sealed straight into the answer's `bytes` (`Encoder::seal_into`, the GIL
/// released while it seals), instead of into a buffer then copied into the
/// answer. Below it, the GIL's release and retaking for each payload would
/// cost more than the copy saves.
const SEAL_INTO_BYTES: usize = 16 << 10;

impl Codec {
    /// Works through `items` a step of about [`CHUNK_BYTES`] at a time:
    /// serialized (messages), the codec run without the GIL, then the step's
    /// answers made. The codec's errors name the payload's index in the whole
    /// batch. `max_bytes`: a batch over it stops at the step that passes it.
    fn run<'py>(
        &self,
        py: Python<'py>,
        codec: &RustCodec,
        items: Items<'_, 'py>,
        op: Op,
        max_bytes: Option<usize>,
    ) -> Result<Vec<Bound<'py, PyAny>>, Stop> {
        let from_string = match items {
            Items::Messages([first, ..]) => Some(self.parser(first)?),
            _ => None,
        };
        let mut out = Vec::with_capacity(items.len());
        let (mut first, mut total) = (0, 0);
        let mut serialized = Vec::new();
        while first < items.len() {
            serialized.clear();
            let (mut bytes, mut limit) = (0, CHUNK_BYTES);
            while first + serialized.len() < items.len() && (serialized.is_empty() || bytes < limit)
            {
                let item = items.serialized(first + serialized.len())?;
                let left = items.len() - first;
                if serialized.is_empty() && left > 1 && self.takes_whole(op, item.as_bytes()) {
                    limit = usize::MAX;
                }
                bytes += item.as_bytes().len();
                serialized.push(item);
            }
            total += bytes;
            if max_bytes.is_some_and(|max| total > max) {
                return Err(Stop::TooLarge);
            }
            let into = matches!(op, Op::Encode) && limit != usize::MAX;
            let done = step(py, codec, &serialized, first, op, into)?.map_err(Stop::Codec)?;
            answers(py, done, |bytes| {
                out.push(match &from_string {
                    Some(from_string) => from_string.call1((bytes,))?,
                    None => bytes.into_any(),
                });
                Ok(())
            })?;
            first += serialized.len();
        }
        Ok(out)
    }
}

impl Codec {
    /// The answers' parser: `FromString` of `first`'s class, the class they
    /// are made in; kept for the first class seen (the SDK's `Payload`),
    /// looked up for any other.
    fn parser<'py>(&self, first: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let py = first.py();
        let class = first.get_type();
        let lookup = |class: &Bound<'py, PyType>| class.getattr(intern!(py, "FromString"));
        let (kept, from_string) = self.parser.get_or_try_init(py, || -> PyResult<_> {
            Ok((class.clone().unbind(), lookup(&class)?.unbind()))
        })?;
        if kept.bind(py).is(&class) {
            Ok(from_string.bind(py).clone())
        } else {
            lookup(&class)
        }
    }

    /// Whether a step that starts with the serialized payload `first` takes
    /// the rest of the batch: an encode that may compress across threads, on
    /// a payload zstd will be tried on (see [`CHUNK_BYTES`]).
    fn takes_whole(&self, op: Op, first: &[u8]) -> bool {
        matches!(op, Op::Encode) && self.splits && !tcodec::looks_incompressible(first)
    }
}

/// Runs `op` over one step of a batch, whose first payload is the batch's
/// `first`, without the GIL (parsing, the codec, and any KMS call
/// included). The outer error is a payload to decode that does not parse.
fn step<'b, 'c>(
    py: Python<'_>,
    codec: &'c RustCodec,
    payloads: &'b [Bound<'_, PyBytes>],
    first: usize,
    op: Op,
    into: bool,
) -> PyResult<Result<Done<'b, 'c>, tcodec::CodecError>> {
    let payloads: Vec<&'b [u8]> = payloads.iter().map(|b| b.as_bytes()).collect();
    py.detach(move || match op {
        Op::Encode if into => Ok(prepared(codec, &payloads, first)),
        Op::Encode => Ok(codec
            .encode_serialized(&payloads)
            .map(|sealed| Done {
                buffer: Vec::new(),
                payloads: sealed.into_iter().map(Out::Whole).collect(),
                encoder: None,
            })
            .map_err(|e| match e.index() {
                Some(index) => e.at_index(first + index),
                None => e,
            })),
        Op::Decode => opened(codec, &payloads, first),
    })
}

/// Seals a step of a batch on one thread, as `Codec::encode_serialized`
/// would, naming each payload by `first` plus its place in the step; a large
/// one is only prepared, to be sealed into its answer ([`SEAL_INTO_BYTES`]).
fn prepared<'b, 'c>(
    codec: &'c RustCodec,
    payloads: &[&'b [u8]],
    first: usize,
) -> Result<Done<'b, 'c>, tcodec::CodecError> {
    let mut encoder = codec.encoder(payloads.len())?;
    let out = (first..)
        .zip(payloads)
        .map(|(index, bytes)| {
            if bytes.len() >= SEAL_INTO_BYTES {
                encoder.prepare_serialized(index, bytes).map(Out::Sealing)
            } else {
                encoder.encode_serialized(index, bytes).map(Out::Whole)
            }
        })
        .collect::<Result<_, _>>()?;
    Ok(Done {
        buffer: Vec::new(),
        payloads: out,
        encoder: Some(encoder),
    })
}

/// Decodes a step of a batch of serialized payloads as `Codec::decode` would,
/// naming each by `first` plus its place in the step. Payloads in the shape
/// SDKs write are read in place ([`PayloadView`]) and their data opened in one
/// buffer; when what was sealed is a plain payload, its bytes there are the
/// answer, with no parse and no serialization. Others (more metadata than a
/// view holds, External Storage details) are parsed whole.
fn opened<'b, 'c>(
    codec: &'c RustCodec,
    payloads: &[&'b [u8]],
    first: usize,
) -> PyResult<Result<Done<'b, 'c>, tcodec::CodecError>> {
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
    for (index, (bytes, view)) in (first..).zip(payloads.iter().zip(&views)) {
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
        encoder: None,
    }))
}

/// A step's answers as Python `bytes`, each handed to `take` in order: each
/// payload serialized straight into its new `bytes` (which Python zeroes
/// first; this crate has no unsafe code to skip that), sealed straight into
/// it with the GIL released (nothing else can reach a `bytes` not yet handed
/// back), or its bytes copied from the step's buffer.
fn answers<'py>(
    py: Python<'py>,
    done: Done<'_, '_>,
    mut take: impl FnMut(Bound<'py, PyBytes>) -> PyResult<()>,
) -> PyResult<()> {
    let Done {
        buffer,
        payloads,
        mut encoder,
    } = done;
    for out in payloads {
        take(match out {
            Out::At(range) => PyBytes::new(py, &buffer[range]),
            Out::Whole(p) => PyBytes::new_with(py, p.encoded_len(), |mut buf: &mut [u8]| {
                p.encode(&mut buf)
                    .map_err(|e| CodecError::new_err(format!("cannot serialize a payload: {e}")))
            })?,
            Out::Sealing(prepared) => {
                let encoder = encoder
                    .as_mut()
                    .ok_or_else(|| CodecError::new_err("a prepared payload without its encoder"))?;
                PyBytes::new_with(py, prepared.serialized_len(), |buf: &mut [u8]| {
                    py.detach(|| encoder.seal_into(prepared, buf))
                        .map_err(|e| error(&e))
                })?
            }
        })?;
    }
    Ok(())
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Keyring>()?;
    m.add_class::<Codec>()?;
    m.add("CodecError", m.py().get_type::<CodecError>())?;
    Ok(())
}
