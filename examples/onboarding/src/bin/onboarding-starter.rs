//! The reference starter: starts an onboarding workflow, confirms the
//! customer's address by signal, and prints the result as JSON.
//!
//! ```text
//! onboarding-starter run    WORKFLOW_ID   # start, signal, wait, print the result
//! onboarding-starter start  WORKFLOW_ID   # start only (the workflow waits for the signal)
//!   … [--document FILE]                   # run/start: attach an identity document scan
//! onboarding-starter signal WORKFLOW_ID   # confirm the address
//! onboarding-starter result WORKFLOW_ID   # wait for the result and print it
//! ```
//!
//! Configured by the same environment as the worker.
#![allow(clippy::print_stdout)]

use base64::Engine as _;
use tcodec_onboarding::{self as onboarding, Customer, Error};
use tcodec_worker::WorkerCodec;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (command, id, document) = match args.as_slice() {
        [command, id] => (command, id, None),
        [command, id, flag, file] if flag == "--document" => (command, id, Some(file)),
        _ => {
            return Err(
                "usage: onboarding-starter run|start|signal|result WORKFLOW_ID [--document FILE]"
                    .into(),
            );
        }
    };
    let mut customer = Customer::example();
    if let Some(file) = document {
        let scan = std::fs::read(file).map_err(|e| format!("cannot read {file}: {e}"))?;
        customer.id_document = base64::engine::general_purpose::STANDARD.encode(scan);
    }
    let tcodec = WorkerCodec::from_env().map_err(|e| format!("cannot set up tcodec: {e}"))?;
    let (address, namespace) = onboarding::target_from_env();
    let client = onboarding::connect(&address, &namespace, tcodec.data_converter()).await?;
    let print_result = |account| -> Result<(), Error> {
        println!("{}", serde_json::to_string(&account)?);
        Ok(())
    };
    match command.as_str() {
        "run" => {
            onboarding::start(&client, id, customer).await?;
            onboarding::confirm_address(&client, id).await?;
            print_result(onboarding::result(&client, id).await?)
        }
        "start" => onboarding::start(&client, id, customer).await,
        "signal" => onboarding::confirm_address(&client, id).await,
        "result" => print_result(onboarding::result(&client, id).await?),
        other => Err(format!("unknown command {other:?}: use run, start, signal or result").into()),
    }
}
