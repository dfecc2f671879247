//! What decoding accepts besides payloads tcodec sealed.
//!
//! Whoever runs the Temporal server can replace any stored payload. A decoder
//! that passed through whatever was not sealed would let them swap a sealed
//! signal argument or activity result for plaintext of their choosing, or for
//! a `binary/zlib` payload, which needs no key to write. So by default a worker
//! refuses every payload tcodec did not seal; a migration names its exceptions
//! here, each off unless set.

use crate::legacy;

/// Which payloads not sealed by tcodec a [`Codec`](crate::Codec) decodes or
/// hands back. [`DecodePolicy::default`] is strict: none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DecodePolicy {
    /// Payloads of other encodings, handed back as they are.
    pub plaintext: Plaintext,
    /// The official samples' `binary/encrypted` payloads, decoded given their
    /// key.
    pub legacy_encrypted: bool,
    /// `binary/zlib` payloads, decompressed. They are not encrypted, so
    /// anyone who can write a payload can write one.
    pub zlib: bool,
}

/// Which plaintext payloads (of an encoding no codec layer claims) pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Plaintext {
    /// None: a worker's default.
    #[default]
    Refuse,
    /// Those of these encodings (`json/plain`, `binary/null`, …); the empty
    /// string stands for a payload without an `encoding`.
    Encodings(Vec<String>),
    /// All of them, legacy payloads whose format is not allowed among them
    /// (undecoded): what a codec server does, to show old histories.
    Any,
}

impl DecodePolicy {
    /// Refuses every payload tcodec did not seal (the default).
    pub fn strict() -> Self {
        Self::default()
    }

    /// Hands every payload it does not decode back as it is, for display
    /// (the codec server, `tcodec decode`): plaintext, and legacy payloads
    /// undecoded unless their format is allowed as well.
    pub fn display() -> Self {
        Self::default().allow_any_plaintext()
    }

    /// This policy, also handing back plaintext payloads of `encoding`.
    pub fn allow_plaintext(mut self, encoding: impl Into<String>) -> Self {
        let encoding = encoding.into();
        match &mut self.plaintext {
            Plaintext::Any => {}
            Plaintext::Encodings(list) => list.push(encoding),
            Plaintext::Refuse => self.plaintext = Plaintext::Encodings(vec![encoding]),
        }
        self
    }

    /// This policy, handing back every plaintext payload.
    pub fn allow_any_plaintext(mut self) -> Self {
        self.plaintext = Plaintext::Any;
        self
    }

    /// This policy, also decoding the samples' `binary/encrypted` payloads.
    pub fn allow_legacy_encrypted(mut self) -> Self {
        self.legacy_encrypted = true;
        self
    }

    /// This policy, also decompressing `binary/zlib` payloads.
    pub fn allow_zlib(mut self) -> Self {
        self.zlib = true;
        self
    }

    /// This policy with one more exception, named as the configuration names
    /// it: an encoding of plaintext to hand back, `*` for any plaintext, or
    /// `binary/encrypted` or `binary/zlib` for a legacy format.
    pub fn allow(self, name: &str) -> Self {
        match name {
            "*" => self.allow_any_plaintext(),
            legacy::ENCODING_ENCRYPTED => self.allow_legacy_encrypted(),
            legacy::ENCODING_ZLIB => self.allow_zlib(),
            encoding => self.allow_plaintext(encoding),
        }
    }

    /// This policy with each of `names` allowed, as [`allow`](Self::allow)
    /// takes them: what a configuration's list of exceptions gives.
    pub fn allow_each<S: AsRef<str>>(self, names: impl IntoIterator<Item = S>) -> Self {
        names
            .into_iter()
            .fold(self, |policy, name| policy.allow(name.as_ref()))
    }

    /// The strict policy with the exceptions a comma-separated list names, as
    /// `TCODEC_DECODE_ALLOW` takes them (workers in every language): plaintext
    /// encodings (`json/plain`, …, `*` for any), `binary/encrypted`,
    /// `binary/zlib`. Blank items are ignored; an empty list is strict.
    ///
    /// ```
    /// use tcodec::DecodePolicy;
    /// assert_eq!(
    ///     DecodePolicy::from_allow_list("json/plain, binary/zlib"),
    ///     DecodePolicy::strict().allow_plaintext("json/plain").allow_zlib()
    /// );
    /// assert_eq!(DecodePolicy::from_allow_list(""), DecodePolicy::strict());
    /// ```
    pub fn from_allow_list(list: &str) -> Self {
        Self::strict().allow_each(list.split(',').map(str::trim).filter(|i| !i.is_empty()))
    }

    /// Whether a plaintext payload of `encoding` passes.
    pub(crate) fn allows_plaintext(&self, encoding: Option<&[u8]>) -> bool {
        match &self.plaintext {
            Plaintext::Refuse => false,
            Plaintext::Any => true,
            Plaintext::Encodings(list) => {
                let encoding = encoding.unwrap_or_default();
                list.iter().any(|e| e.as_bytes() == encoding)
            }
        }
    }
}
