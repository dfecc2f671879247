//! `tcodec keys …`: the keyring CLI over `tcodec_keys::ops`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use serde_json::json;
use tcodec_keys::document::{KekRef, KeyVersion, KeyringDocument};
use tcodec_keys::kek::local::LocalKek;
use tcodec_keys::kek::{KekProvider, Keks};
use tcodec_keys::ops::{self, Transition};
use tcodec_keys::store;

use crate::cli::{KeyringOpts, KeysArgs, KeysCommand};

pub fn run(args: KeysArgs) -> anyhow::Result<()> {
    if let KeysCommand::NewMasterKey = args.command {
        let key = LocalKek::generate_hex()?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", key.as_str())?;
        return Ok(());
    }
    let path = keyring_path(&args.keys)?;
    let ctx = Ctx {
        args: &args,
        path: &path,
    };
    match &args.command {
        KeysCommand::Init { name, kek } => {
            let keks = ctx.keks(None, Some(kek))?;
            let kek = ctx.kek_ref(&keks, kek)?;
            let doc = ops::init(&path, name, &keks, &kek)
                .with_context(|| format!("cannot create keyring {}", path.display()))?;
            ctx.print_versions(&doc, doc.keys(), "created")
        }
        KeysCommand::List => {
            let doc = store::read(&path)?;
            ctx.print_versions(&doc, doc.keys(), "")
        }
        KeysCommand::Add { kek } | KeysCommand::Rotate { kek } => {
            let doc = store::read(&path)?;
            let keks = ctx.keks(Some(&doc), kek.as_deref())?;
            let kek = kek.as_deref().map(|k| ctx.kek_ref(&keks, k)).transpose()?;
            let version = if matches!(args.command, KeysCommand::Rotate { .. }) {
                ops::rotate(&path, &keks, kek.as_ref())?
            } else {
                ops::add(&path, &keks, kek.as_ref())?
            };
            let doc = store::read(&path)?;
            ctx.print_versions(&doc, std::slice::from_ref(&version), "added")
        }
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
        KeysCommand::Rewrap { kek } => {
            let doc = store::read(&path)?;
            let keks = ctx.keks(Some(&doc), Some(kek))?;
            let to = ctx.kek_ref(&keks, kek)?;
            let moved = ops::rewrap(&path, &keks, &to)?;
            if args.json {
                let ids: Vec<_> = moved.iter().map(|k| k.to_string()).collect();
                println_json(&json!({ "rewrapped": ids, "kek": to.to_string() }))
            } else {
                let mut out = std::io::stdout().lock();
                writeln!(out, "rewrapped {} key(s) under {to}", moved.len())?;
                Ok(())
            }
        }
        KeysCommand::NewMasterKey => Ok(()),
    }
}

/// What every command needs: the arguments and the keyring path.
struct Ctx<'a> {
    args: &'a KeysArgs,
    path: &'a Path,
}

impl Ctx<'_> {
    fn keks(&self, doc: Option<&KeyringDocument>, spec: Option<&str>) -> anyhow::Result<Keks> {
        keks(&self.args.keys, doc, spec)
    }

    /// Parses `local` or `aws-kms:<key>`.
    fn kek_ref(&self, keks: &Keks, spec: &str) -> anyhow::Result<KekRef> {
        let (provider, key) = match spec.split_once(':') {
            Some((p, k)) => (p, Some(k)),
            None => (spec, None),
        };
        let provider = keks.named(provider).ok_or_else(|| match provider {
            "local" => anyhow!(
                "--kek local needs the master key: set TCODEC_MASTER_KEY or pass --master-key-file \
                 (make one with `tcodec keys new-master-key`)"
            ),
            "aws-kms" => anyhow!("--kek aws-kms needs a key: aws-kms:<key id, ARN or alias>"),
            other => anyhow!("unknown KEK provider {other:?}: use local or aws-kms:<key>"),
        })?;
        Ok(KekProvider::kek_ref(provider, key)?)
    }

    fn transition(&self, id: &str, transition: Transition) -> anyhow::Result<()> {
        let state = ops::transition(self.path, id, transition)?;
        if self.args.json {
            println_json(&json!({ "id": id, "state": state.as_str() }))
        } else {
            let mut out = std::io::stdout().lock();
            writeln!(out, "key {id} is now {state}")?;
            Ok(())
        }
    }

    fn print_versions(
        &self,
        doc: &KeyringDocument,
        versions: &[KeyVersion],
        verb: &str,
    ) -> anyhow::Result<()> {
        if self.args.json {
            let keys: Vec<_> = versions
                .iter()
                .map(|k| {
                    json!({
                        "id": k.id.as_str(),
                        "state": k.state.as_str(),
                        "created": k.created,
                        "kek": k.kek.to_string(),
                    })
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
            writeln!(
                out,
                "{verb} in keyring {} ({}):",
                doc.name(),
                self.path.display()
            )?;
        }
        writeln!(out, "{:<12} {:<10} {:<21} KEK", "ID", "STATE", "CREATED")?;
        for k in versions {
            writeln!(
                out,
                "{:<12} {:<10} {:<21} {}",
                k.id, k.state, k.created, k.kek
            )?;
        }
        Ok(())
    }
}

/// The keyring path from `--keyring` or `TCODEC_KEYRING`.
pub fn keyring_path(opts: &KeyringOpts) -> anyhow::Result<PathBuf> {
    opts.keyring
        .clone()
        .ok_or_else(|| anyhow!("no keyring: pass --keyring PATH or set TCODEC_KEYRING"))
}

/// The KEK providers a keyring and a `--kek` spec need. The local master key is
/// loaded when available; AWS KMS is started only when something names it.
pub fn keks(
    opts: &KeyringOpts,
    doc: Option<&KeyringDocument>,
    spec: Option<&str>,
) -> anyhow::Result<Keks> {
    let needs_kms = spec.is_some_and(|s| s.starts_with("aws-kms:"))
        || doc.is_some_and(|d| d.keys().iter().any(|k| k.kek.provider == "aws-kms"));
    Ok(opts.kek_settings().keks(needs_kms)?)
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
