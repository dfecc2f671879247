//! The `tcodec` command line.

use std::path::{Path, PathBuf};

use anyhow::anyhow;
use clap::{Args, Parser, Subcommand};
use tcodec_keys::FileKeyring;
use tcodec_keys::document::KeyringDocument;
use tcodec_keys::kek::{AWS_KMS, KekSettings, Keks};

/// tcodec: keep Temporal payloads secret from the Temporal server.
#[derive(Debug, Parser)]
#[command(name = "tcodec", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage a keyring: key versions, their states and their wrapping.
    Keys(KeysArgs),
    /// Encode payloads: read `{"payloads": [...]}` (the codec protocol's JSON),
    /// write them sealed under the keyring's primary key.
    Encode(CodecArgs),
    /// Decode payloads: read `{"payloads": [...]}`, write them decoded.
    Decode(CodecArgs),
    /// Audit or decode a workflow history as the server stores it
    /// (`temporal workflow show --output json`).
    History {
        /// What to do with it.
        #[command(subcommand)]
        command: HistoryCommand,
    },
    /// Run the codec server for the Temporal Web UI and CLI.
    Serve {
        /// The configuration file (TOML).
        #[arg(long, env = "TCODEC_CONFIG", hide_env_values = true)]
        config: PathBuf,
    },
}

/// `tcodec history`.
#[derive(Debug, Subcommand)]
pub enum HistoryCommand {
    /// Check that the server holds no plaintext: every payload sealed by
    /// tcodec (or a legacy encrypted format the keyring imported), every
    /// failure message encoded. Needs no key. Prints what it found (payloads
    /// by key id, failures, search attributes) and each place in plaintext,
    /// never its content. Exit status 0 when all is sealed, 1 when anything
    /// is plaintext or could not be checked, 2 when the input cannot be read.
    Check(HistoryCheckArgs),
    /// Decode every payload of a history (and restore encoded failure
    /// messages); write the history back as JSON, otherwise unchanged.
    Decode(CodecInput),
}

/// `tcodec history check`.
#[derive(Debug, Args)]
pub struct HistoryCheckArgs {
    /// Read the history from this file instead of standard input: JSON as
    /// `temporal workflow show --output json` or `temporal workflow describe
    /// --output json` prints it.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Print the findings as JSON.
    #[arg(long)]
    pub json: bool,
    /// External Storage: with a bucket, the objects that references name are
    /// fetched (from that bucket and prefix only) and checked too; without
    /// one, a reference cannot be checked and the check fails.
    #[command(flatten)]
    pub storage: StorageOpts,
}

/// What `tcodec encode`, `decode` and `history decode` read, and with which
/// keys.
#[derive(Debug, Args)]
pub struct CodecInput {
    /// Where the keys come from.
    #[command(flatten)]
    pub keys: KeyringOpts,
    /// Read from this file instead of standard input.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Also decode this legacy format, for a migration: `binary/encrypted`
    /// (the official samples' encryption) or `binary/zlib`. Plaintext payloads
    /// are written back as they are.
    #[arg(long = "allow", value_name = "ENCODING", value_parser = ["binary/encrypted", "binary/zlib"])]
    pub allow: Vec<String>,
    /// External Storage (S3), as workers configure it.
    #[command(flatten)]
    pub storage: StorageOpts,
}

/// `tcodec encode` and `tcodec decode`.
#[derive(Debug, Args)]
pub struct CodecArgs {
    /// The keys, the input, the legacy formats, the storage.
    #[command(flatten)]
    pub codec: CodecInput,
    /// Treat each input line as its own `{"payloads": [...]}` batch and answer
    /// each with one line, `{"error": "..."}` for a batch that fails, keeping
    /// the keyring (and its unwrapped keys) between batches.
    #[arg(long)]
    pub lines: bool,
}

/// External Storage for `tcodec encode` and `tcodec decode`: with a bucket,
/// `encode` stores sealed payloads of at least the threshold there and writes
/// references; `decode` fetches the references it meets (from that bucket
/// and prefix only) and decodes what they name. Without one, references are
/// written back as they are. Credentials come from the AWS chain.
#[derive(Debug, Args)]
pub struct StorageOpts {
    /// External Storage in this S3 bucket: `encode` stores sealed payloads of
    /// at least the threshold there and writes references; `decode` fetches
    /// the references it meets, from there only. Without it, references are
    /// written back as they are.
    #[arg(
        long = "storage-bucket",
        env = "TCODEC_STORAGE_BUCKET",
        value_name = "BUCKET"
    )]
    pub bucket: Option<String>,
    /// Object key prefix (default `v0/ns/<namespace>/`, where the official S3
    /// drivers write the namespace's payloads).
    #[arg(
        long = "storage-prefix",
        env = "TCODEC_STORAGE_PREFIX",
        value_name = "PREFIX"
    )]
    pub prefix: Option<String>,
    /// The namespace, for the default prefix.
    #[arg(long, env = "TEMPORAL_NAMESPACE", default_value = "default")]
    pub namespace: String,
    /// S3 endpoint URL, for a VPC endpoint or an S3-compatible store.
    #[arg(
        long = "storage-endpoint",
        env = "TCODEC_STORAGE_ENDPOINT",
        value_name = "URL"
    )]
    pub endpoint: Option<String>,
    /// The region (default: the AWS chain's, else us-east-1).
    #[arg(
        long = "storage-region",
        env = "TCODEC_STORAGE_REGION",
        value_name = "REGION"
    )]
    pub region: Option<String>,
    /// `encode` stores sealed payloads of at least this many bytes.
    #[arg(long = "storage-threshold", env = "TCODEC_STORAGE_THRESHOLD", value_name = "BYTES",
          default_value_t = tcodec::storage::DEFAULT_THRESHOLD)]
    pub threshold: usize,
}

impl StorageOpts {
    /// The store these options name, if any.
    pub fn store(&self) -> Option<tcodec::storage::s3::S3Store> {
        let bucket = self.bucket.clone().filter(|b| !b.is_empty())?;
        let mut config = tcodec::storage::StorageConfig::new(bucket, &self.namespace);
        if let Some(prefix) = &self.prefix {
            config.prefix = prefix.clone();
        }
        config.threshold = self.threshold;
        let options = tcodec::storage::s3::S3Options {
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            timeout: None,
        };
        Some(tcodec::storage::s3::S3Store::new(config, options))
    }
}

/// Which keyring, and how to unwrap its keys.
#[derive(Debug, Args)]
pub struct KeyringOpts {
    /// The keyring file.
    #[arg(long, env = "TCODEC_KEYRING", global = true, hide_env_values = true)]
    pub keyring: Option<PathBuf>,

    /// File holding the local master key (32 raw bytes, or hex or base64 text).
    /// The key may instead be given in TCODEC_MASTER_KEY; never on the command line.
    #[arg(
        long,
        env = "TCODEC_MASTER_KEY_FILE",
        global = true,
        hide_env_values = true
    )]
    pub master_key_file: Option<PathBuf>,

    /// AWS KMS endpoint URL (default: the AWS configuration chain, e.g. AWS_ENDPOINT_URL).
    #[arg(long, global = true)]
    pub kms_endpoint: Option<String>,

    /// AWS region (default: the AWS configuration chain, e.g. AWS_REGION).
    #[arg(long, global = true)]
    pub kms_region: Option<String>,

    /// An AWS KMS key (ARN, key id, alias) keyrings may name; repeat, or
    /// comma-separate in TCODEC_KMS_KEYS. A keyring naming any other KMS key
    /// is refused before KMS is called. `--kek aws-kms:<key>` allows its key.
    #[arg(
        long = "kms-key",
        value_name = "KEY",
        env = "TCODEC_KMS_KEYS",
        value_delimiter = ',',
        global = true,
        hide_env_values = true
    )]
    pub kms_keys: Vec<String>,
}

impl KeyringOpts {
    /// The keyring file, from `--keyring` or `TCODEC_KEYRING`.
    pub fn path(&self) -> anyhow::Result<&Path> {
        self.keyring
            .as_deref()
            .ok_or_else(|| anyhow!("no keyring: pass --keyring PATH or set TCODEC_KEYRING"))
    }

    /// Where the KEKs come from.
    pub fn kek_settings(&self) -> KekSettings {
        KekSettings {
            master_key_file: self.master_key_file.clone(),
            kms_endpoint: self.kms_endpoint.clone(),
            kms_region: self.kms_region.clone(),
            kms_keys: self.kms_keys.clone(),
        }
    }

    /// Opens the keyring for encoding and decoding (the file read once).
    pub fn open(&self) -> anyhow::Result<FileKeyring> {
        Ok(FileKeyring::open_with_settings(
            self.path()?,
            &self.kek_settings(),
        )?)
    }

    /// The KEK providers `doc`'s keys and a `--kek` spec need: the local
    /// master key when one is configured, AWS KMS only when something names
    /// it. The KMS key a `--kek` spec names is allowed: the operator named it.
    pub fn keks(&self, doc: Option<&KeyringDocument>, spec: Option<&str>) -> anyhow::Result<Keks> {
        let named = spec.and_then(|s| s.strip_prefix(AWS_KMS)?.strip_prefix(':'));
        let kms = named.is_some() || doc.is_some_and(|d| d.uses_provider(AWS_KMS));
        let mut settings = self.kek_settings();
        settings.kms_keys.extend(named.map(str::to_owned));
        Ok(settings.keks(kms)?)
    }
}

/// `tcodec keys`: options shared by every keyring command.
#[derive(Debug, Args)]
pub struct KeysArgs {
    /// Where the keys come from.
    #[command(flatten)]
    pub keys: KeyringOpts,

    /// Print JSON instead of tables, for scripts.
    #[arg(long, global = true)]
    pub json: bool,

    /// The keyring command.
    #[command(subcommand)]
    pub command: KeysCommand,
}

/// The keyring commands.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a keyring with its first (primary) key.
    Init {
        /// The keyring's name, bound into every wrapped key.
        #[arg(long)]
        name: String,
        /// What wraps the data keys: `local` (the master key) or `aws-kms:<key id, ARN or alias>`.
        #[arg(long)]
        kek: String,
    },
    /// List key versions.
    List,
    /// Add a pending key (phase one of a rotation: let every reader load it, then promote).
    Add {
        /// KEK for the new key (default: the primary's).
        #[arg(long)]
        kek: Option<String>,
    },
    /// Make a key the primary; the old primary is retired.
    Promote {
        /// The key id.
        id: String,
    },
    /// Add a key and make it primary at once (for readers that share the keyring file).
    Rotate {
        /// KEK for the new key (default: the primary's).
        #[arg(long)]
        kek: Option<String>,
    },
    /// Retire a pending key: it never becomes primary but still decrypts.
    Retire {
        /// The key id.
        id: String,
    },
    /// Refuse to decrypt with a key, reversibly.
    Disable {
        /// The key id.
        id: String,
    },
    /// Let a disabled key decrypt again.
    Enable {
        /// The key id.
        id: String,
    },
    /// Erase a disabled key from this keyring file for good.
    ///
    /// Payloads under it can no longer be read through this file. Crypto-shredding
    /// reaches only this file: a backup of it, an old ConfigMap revision or a Git
    /// commit still holds the wrapped key, and still unwraps while its KEK exists.
    /// To make the payloads unreadable everywhere, also purge those copies, or
    /// retire the KEK itself once no live key needs it (rewrap the others to a new
    /// KEK, then schedule the old KMS key's deletion or destroy the old master key).
    Destroy {
        /// The key id.
        id: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Import a key of the samples' `binary/encrypted` codec, decrypt-only.
    ///
    /// Payloads the official samples' encryption codec wrote (metadata
    /// `encryption-key-id: <id>`) then decode wherever this keyring is used and
    /// the decode policy allows `binary/encrypted`. The key is wrapped by the
    /// keyring's KEK like a data key; `list` shows it as decrypt-only, and
    /// `disable`, `enable` and `destroy` take its id.
    ImportLegacy {
        /// The `encryption-key-id` the old payloads carry.
        #[arg(long)]
        id: String,
        /// A file holding the 32-byte key: raw (the samples' 32-character text
        /// key, a final newline allowed), 64 hex digits or base64. Its group
        /// and others must have no access (chmod 600).
        #[arg(long)]
        key_file: PathBuf,
        /// KEK to wrap it with (default: the primary's).
        #[arg(long)]
        kek: Option<String>,
    },
    /// Re-wrap every data key (and legacy key) under a new KEK, without touching payloads.
    Rewrap {
        /// The new KEK: `local` or `aws-kms:<key>`.
        #[arg(long)]
        kek: String,
    },
    /// Print a new random local master key (hex) to standard output.
    NewMasterKey,
}
