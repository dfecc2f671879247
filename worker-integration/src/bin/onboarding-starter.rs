//! The reference starter: starts an onboarding workflow, confirms the
//! customer's address by signal, and prints the result as JSON.
//!
//! ```text
//! onboarding-starter run    WORKFLOW_ID   # start, signal, wait, print the result
//! onboarding-starter start  WORKFLOW_ID   # start only (the workflow waits for the signal)
//! onboarding-starter signal WORKFLOW_ID   # confirm the address
//! onboarding-starter result WORKFLOW_ID   # wait for the result and print it
//! ```
//!
//! Configured by the same environment as the worker.
#![allow(clippy::print_stdout)]

use anyhow::{Context, bail};
use tcodec_worker::WorkerCodec;
use tcodec_worker::onboarding::{Customer, OnboardingWorkflow, TASK_QUEUE, connect};
use temporalio_client::{
    Client, WorkflowGetResultOptions, WorkflowSignalOptions, WorkflowStartOptions,
};
use temporalio_common::MemoValues;

/// The address the customer confirms by signal.
const CONFIRMED_ADDRESS: &str = "7 Royal Crescent, Bath";

async fn start(client: &Client, id: &str) -> anyhow::Result<()> {
    let customer = Customer::example();
    let mut memo = MemoValues::new();
    memo.insert(
        "customer",
        format!("{} <{}>", customer.name, customer.email),
    );
    client
        .start_workflow(
            OnboardingWorkflow::run,
            customer,
            WorkflowStartOptions::new(TASK_QUEUE, id).memo(memo).build(),
        )
        .await
        .with_context(|| format!("cannot start workflow {id}"))?;
    Ok(())
}

async fn signal(client: &Client, id: &str) -> anyhow::Result<()> {
    client
        .get_workflow_handle::<OnboardingWorkflow>(id)
        .signal(
            OnboardingWorkflow::confirm_address,
            CONFIRMED_ADDRESS.to_owned(),
            WorkflowSignalOptions::default(),
        )
        .await
        .with_context(|| format!("cannot signal workflow {id}"))?;
    Ok(())
}

async fn result(client: &Client, id: &str) -> anyhow::Result<()> {
    let account = client
        .get_workflow_handle::<OnboardingWorkflow>(id)
        .get_result(WorkflowGetResultOptions::default())
        .await
        .with_context(|| format!("workflow {id} did not complete"))?;
    println!("{}", serde_json::to_string(&account)?);
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [command, id] = args.as_slice() else {
        bail!("usage: onboarding-starter run|start|signal|result WORKFLOW_ID");
    };
    let tcodec = WorkerCodec::from_env().context("cannot set up tcodec")?;
    let client = connect(tcodec.data_converter()).await?;
    match command.as_str() {
        "run" => {
            start(&client, id).await?;
            signal(&client, id).await?;
            result(&client, id).await
        }
        "start" => start(&client, id).await,
        "signal" => signal(&client, id).await,
        "result" => result(&client, id).await,
        other => bail!("unknown command {other:?}: use run, start, signal or result"),
    }
}
