//! `tcodec encode` and `tcodec decode`: the codec on the command line, over the
//! same JSON the codec server speaks.

use std::io::{BufRead, Read, Write};
use std::sync::Arc;

use anyhow::Context;
use tcodec::{Codec, CodecOptions, DecodePolicy};
use tcodec_json::{Direction, Limits, ProcessError, process};

use crate::cli::CodecArgs;

pub fn run(args: CodecArgs, direction: Direction) -> anyhow::Result<()> {
    // Like the codec server: plaintext is shown as it is, legacy formats are
    // decoded only when named.
    let policy = DecodePolicy::display().allow_each(&args.allow);
    let options = CodecOptions::default().with_decode_policy(policy);
    let codec = Codec::with_options(Arc::new(args.keys.open()?), options);

    let mut stdout = std::io::stdout().lock();
    if args.lines {
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
            match run_batch(&codec, line.as_bytes(), direction) {
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
    let mut input = Vec::new();
    match &args.input {
        Some(file) => {
            input =
                std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?
        }
        None => {
            std::io::stdin()
                .read_to_end(&mut input)
                .context("cannot read standard input")?;
        }
    }
    let response = run_batch(&codec, &input, direction)?;
    stdout.write_all(&response)?;
    writeln!(stdout)?;
    Ok(())
}

fn run_batch(codec: &Codec, input: &[u8], direction: Direction) -> anyhow::Result<Vec<u8>> {
    match process(codec, direction, input, &Limits::payloads(usize::MAX)) {
        Ok(answer) => Ok(answer.body),
        Err(ProcessError::Json(e)) => Err(anyhow::anyhow!(
            "input is not {{\"payloads\": [...]}} JSON: {e}"
        )),
        Err(e) => Err(e.into()),
    }
}
