//! `tcodec encode` and `tcodec decode`: the codec on the command line, over the
//! same JSON the codec server speaks.

use std::io::{BufRead, Read, Write};
use std::sync::Arc;

use anyhow::Context;
use tcodec::storage::s3::S3Store;
use tcodec::{Codec, CodecOptions, DecodePolicy};
use tcodec_json::{Direction, Limits, ProcessError, References, Storage, process_with, references};

use crate::cli::{CodecArgs, KeyringOpts};

/// The codec of `tcodec encode`, `decode` and `history decode`: like the
/// codec server's, plaintext is shown as it is and legacy formats are decoded
/// only when named.
pub(crate) fn open(keys: &KeyringOpts, allow: &[String]) -> anyhow::Result<Codec> {
    let policy = DecodePolicy::display().allow_each(allow);
    let options = CodecOptions::default().with_decode_policy(policy);
    Ok(Codec::with_options(Arc::new(keys.open()?), options))
}

/// All of `file`, or of standard input without one.
pub(crate) fn read_all(file: Option<&std::path::Path>) -> anyhow::Result<Vec<u8>> {
    match file {
        Some(file) => {
            std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))
        }
        None => {
            let mut input = Vec::new();
            std::io::stdin()
                .read_to_end(&mut input)
                .context("cannot read standard input")?;
            Ok(input)
        }
    }
}

/// The runtime External Storage's requests run on.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

pub fn run(
    CodecArgs { codec: args, lines }: CodecArgs,
    direction: Direction,
) -> anyhow::Result<()> {
    let codec = open(&args.keys, &args.allow)?;
    let store = args.storage.store();
    let runtime = store.as_ref().map(|_| runtime()).transpose()?;
    let storage = runtime.as_ref().zip(store.as_ref());

    let mut stdout = std::io::stdout().lock();
    if lines {
        let reader: Box<dyn BufRead> = match &args.input {
            Some(file) => Box::new(std::io::BufReader::new(
                std::fs::File::open(file)
                    .with_context(|| format!("cannot read {}", file.display()))?,
            )),
            None => Box::new(std::io::stdin().lock()),
        };
        for line in reader.lines() {
            let line = line.context("cannot read input")?;
            if line.trim().is_empty() {
                continue;
            }
            match run_batch(&codec, line.as_bytes(), direction, storage) {
                Ok(response) => stdout.write_all(&response)?,
                Err(e) => serde_json::to_writer(
                    &mut stdout,
                    &serde_json::json!({ "error": format!("{e:#}") }),
                )?,
            }
            writeln!(stdout)?;
            stdout.flush()?;
        }
        return Ok(());
    }
    let input = read_all(args.input.as_deref())?;
    let response = run_batch(&codec, &input, direction, storage)?;
    stdout.write_all(&response)?;
    writeln!(stdout)?;
    Ok(())
}

pub(crate) fn run_batch(
    codec: &Codec,
    input: &[u8],
    direction: Direction,
    storage: Option<(&tokio::runtime::Runtime, &S3Store)>,
) -> anyhow::Result<Vec<u8>> {
    let limits = Limits::payloads(usize::MAX);
    let json_error = |e: ProcessError| match e {
        ProcessError::Json(e) => anyhow::anyhow!("input is not {{\"payloads\": [...]}} JSON: {e}"),
        e => e.into(),
    };
    let Some((runtime, store)) = storage else {
        return process_with(codec, direction, input, &limits, Storage::default())
            .map(|a| a.body)
            .map_err(json_error);
    };
    match direction {
        Direction::Decode => {
            // Every reference is checked against the bucket and prefix before
            // the first request; each object is fetched once.
            let (_, found) = references(input, usize::MAX).map_err(json_error)?;
            let locations = store.permit_all(found.iter().map(|(i, r)| (*i, r)))?;
            let fetched =
                runtime.block_on(store.fetch_each(&locations, usize::MAX, |_, _, _| {}))?;
            let storage = Storage {
                references: References::Fetched(fetched),
                store: None,
            };
            let answer =
                process_with(codec, direction, input, &limits, storage).map_err(json_error)?;
            Ok(answer.body)
        }
        Direction::Encode => {
            let storage = Storage {
                references: References::Keep,
                store: Some(store.config()),
            };
            let answer =
                process_with(codec, direction, input, &limits, storage).map_err(json_error)?;
            for item in answer.stored {
                runtime.block_on(store.put(item.index, &item.location, item.object.into()))?;
            }
            Ok(answer.body)
        }
    }
}
