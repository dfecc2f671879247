//! `tcodec keys …`: the keyring CLI over `tcodec_keys::ops`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use anyhow::{Context, anyhow, bail};
use serde_json::json;
use tcodec_keys::document::{KekRef, KeyVersion, KeyringDocument, LegacyKeyVersion};
use tcodec_keys::kek::local::LocalKek;
use tcodec_keys::kek::{AWS_KMS, KekProvider, Keks};
use tcodec_keys::ops::{self, Transition};
use tcodec_keys::store;

use crate::cli::{KeysArgs, KeysCommand};

pub fn run(args: KeysArgs) -> anyhow::Result<()> {
    let ctx = Ctx { args: &args };
    match &args.command {
        KeysCommand::NewMasterKey => new_master_key(),
        KeysCommand::Init { name, kek } => ctx.init(name, kek),
        KeysCommand::List => {
            let doc = store::read(ctx.path()?)?;
            ctx.print_versions(&doc, &rows(&doc), "")
        }
        KeysCommand::ImportLegacy { id, key_file, kek } => {
            ctx.import_legacy(id, key_file, kek.as_deref())
        }
        KeysCommand::Add { kek } => ctx.add(kek.as_deref(), false),
        KeysCommand::Rotate { kek } => ctx.add(kek.as_deref(), true),
        KeysCommand::Promote { id } => ctx.transition(id, Transition::Promote),
        KeysCommand::Retire { id } => ctx.transition(id, Transition::Retire),
        KeysCommand::Disable { id } => ctx.transition(id, Transition::Disable),
        KeysCommand::Enable { id } => ctx.transition(id, Transition::Enable),
        KeysCommand::Destroy { id, yes } => {
            if !yes {
                confirm_destroy(id)?;
            }
            ctx.transition(id, Transition::Destroy)
        }
        KeysCommand::Rewrap { kek } => ctx.rewrap(kek),
    }
}

/// Prints a new random local master key (hex); it needs no keyring.
fn new_master_key() -> anyhow::Result<()> {
    let key = LocalKek::generate_hex()?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", key.as_str())?;
    Ok(())
}

/// What every keyring command needs: the arguments, the keyring path among them.
struct Ctx<'a> {
    args: &'a KeysArgs,
}

impl Ctx<'_> {
    fn path(&self) -> anyhow::Result<&Path> {
        self.args.keys.path()
    }

    fn init(&self, name: &str, kek: &str) -> anyhow::Result<()> {
        let keks = self.args.keys.keks(None, Some(kek))?;
        let kek = kek_ref(&keks, kek)?;
        let path = self.path()?;
        let doc = ops::init(path, name, &keks, &kek)
            .with_context(|| format!("cannot create keyring {}", path.display()))?;
        self.print_versions(&doc, &rows(&doc), "created")
    }

    /// `add`, or `rotate` when `promote` is on.
    fn add(&self, kek: Option<&str>, promote: bool) -> anyhow::Result<()> {
        let doc = store::read(self.path()?)?;
        let keks = self.args.keys.keks(Some(&doc), kek)?;
        let kek = kek.map(|k| kek_ref(&keks, k)).transpose()?;
        let (version, doc) = if promote {
            ops::rotate(self.path()?, &keks, kek.as_ref())?
        } else {
            ops::add(self.path()?, &keks, kek.as_ref())?
        };
        self.print_versions(&doc, &[Row::key(&version)], "added")
    }

    fn import_legacy(&self, id: &str, key_file: &Path, kek: Option<&str>) -> anyhow::Result<()> {
        let doc = store::read(self.path()?)?;
        let keks = self.args.keys.keks(Some(&doc), kek)?;
        let kek = kek.map(|k| kek_ref(&keks, k)).transpose()?;
        let key = tcodec_keys::kek::local::read_key_file(key_file)
            .map_err(|e| anyhow!("legacy key: {e}"))?;
        let (version, doc) = ops::import_legacy(self.path()?, &keks, kek.as_ref(), id, &key)?;
        self.print_versions(&doc, &[Row::legacy(&version)], "imported")
    }

    fn rewrap(&self, kek: &str) -> anyhow::Result<()> {
        let doc = store::read(self.path()?)?;
        let keks = self.args.keys.keks(Some(&doc), Some(kek))?;
        let to = kek_ref(&keks, kek)?;
        let moved = ops::rewrap(self.path()?, &keks, &to)?;
        if self.args.json {
            let ids: Vec<_> = moved.iter().map(|k| k.to_string()).collect();
            return println_json(&json!({ "rewrapped": ids, "kek": to.to_string() }));
        }
        let mut out = std::io::stdout().lock();
        writeln!(out, "rewrapped {} key(s) under {to}", moved.len())?;
        Ok(())
    }

    fn transition(&self, id: &str, transition: Transition) -> anyhow::Result<()> {
        let state = ops::transition(self.path()?, id, transition)?;
        if self.args.json {
            return println_json(&json!({ "id": id, "state": state.as_str() }));
        }
        let mut out = std::io::stdout().lock();
        writeln!(out, "key {id} is now {state}")?;
        Ok(())
    }

    fn print_versions(
        &self,
        doc: &KeyringDocument,
        versions: &[Row<'_>],
        verb: &str,
    ) -> anyhow::Result<()> {
        if self.args.json {
            let keys: Vec<_> = versions
                .iter()
                .map(|k| {
                    let mut row = json!({
                        "id": k.id,
                        "state": k.state.as_str(),
                        "created": k.created,
                        "kek": k.kek.to_string(),
                    });
                    if k.legacy {
                        row["format"] = json!("binary/encrypted");
                    }
                    row
                })
                .collect();
            return println_json(&json!({
                "keyring": doc.name(),
                "revision": doc.revision(),
                "keys": keys,
            }));
        }
        let mut out = std::io::stdout().lock();
        if !verb.is_empty() {
            let (name, path) = (doc.name(), self.path()?.display());
            writeln!(out, "{verb} in keyring {name} ({path}):")?;
        }
        writeln!(out, "{:<12} {:<10} {:<21} KEK", "ID", "STATE", "CREATED")?;
        for k in versions {
            let (state, created, kek) = (&k.state, &k.created, &k.kek);
            // Legacy ids are free text: shown quoted, escaped, and marked.
            let id = if k.legacy {
                format!("{:?} (legacy binary/encrypted)", k.id)
            } else {
                k.id.to_owned()
            };
            writeln!(out, "{id:<12} {state:<10} {created:<21} {kek}")?;
        }
        Ok(())
    }
}

/// One line of `list`: a data key or a legacy key.
struct Row<'a> {
    id: &'a str,
    state: tcodec_keys::KeyState,
    created: &'a str,
    kek: &'a KekRef,
    legacy: bool,
}

impl<'a> Row<'a> {
    fn key(k: &'a KeyVersion) -> Self {
        Self {
            id: k.id.as_str(),
            state: k.state,
            created: &k.created,
            kek: &k.kek,
            legacy: false,
        }
    }

    fn legacy(k: &'a LegacyKeyVersion) -> Self {
        Self {
            id: &k.id,
            state: k.state,
            created: &k.created,
            kek: &k.kek,
            legacy: true,
        }
    }
}

/// Every key of `doc`, data keys first, then legacy keys.
fn rows(doc: &KeyringDocument) -> Vec<Row<'_>> {
    doc.keys()
        .iter()
        .map(Row::key)
        .chain(doc.legacy_keys().iter().map(Row::legacy))
        .collect()
}

/// Parses `--kek`: `local` or `aws-kms:<key>`.
fn kek_ref(keks: &Keks, spec: &str) -> anyhow::Result<KekRef> {
    let (provider, key) = match spec.split_once(':') {
        Some((p, k)) => (p, Some(k)),
        None => (spec, None),
    };
    let named = keks.named(provider).ok_or_else(|| match provider {
        "local" => anyhow!(
            "--kek local needs the master key: set TCODEC_MASTER_KEY or pass --master-key-file \
             (make one with `tcodec keys new-master-key`)"
        ),
        AWS_KMS => anyhow!("--kek {AWS_KMS} needs a key: {AWS_KMS}:<key id, ARN or alias>"),
        other => anyhow!("unknown KEK provider {other:?}: use local or {AWS_KMS}:<key>"),
    })?;
    Ok(KekProvider::kek_ref(named, key)?)
}

fn println_json(value: &serde_json::Value) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// Asks the person at the terminal to type the key id before destroying it.
fn confirm_destroy(id: &str) -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!("destroying key {id} cannot be undone; pass --yes to confirm when not at a terminal");
    }
    let mut err = std::io::stderr().lock();
    write!(
        err,
        "Destroying key {id} makes every payload encrypted under it unreadable, forever.\n\
         Type the key id to confirm: "
    )?;
    err.flush()?;
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer)?;
    if answer.trim() != id {
        bail!("not confirmed; key {id} is unchanged");
    }
    Ok(())
}
