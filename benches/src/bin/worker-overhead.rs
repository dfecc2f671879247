//! Worker overhead of tcodec: workflows per second of a worker against a real
//! Temporal dev server with tcodec as its codec, against the same worker with
//! the SDK's default (plaintext) data converter, measured in the same run.
//!
//! ```text
//! cargo run --release -p tcodec-benches --features worker-overhead --bin worker-overhead [WORKFLOWS_PER_ROUND] [ROUNDS]
//! ```
//!
//! Each round runs both modes, alternating which goes first; each mode starts
//! its own worker on its own task queue and completes WORKFLOWS_PER_ROUND
//! order workflows (one activity each, JSON input and result), started all at
//! once. It prints workflows/s per mode and round and the ratio of medians.
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs
)]

#[path = "../../../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use temporalio_client::{Client, WorkflowGetResultOptions, WorkflowStartOptions};
use temporalio_common::data_converters::DataConverter;
use temporalio_macros::{activities, workflow, workflow_methods};
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use temporalio_sdk::{ActivityOptions, WorkflowContext, WorkflowResult};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Order {
    pub customer: String,
    pub card_number: String,
    pub items: Vec<String>,
    pub amount_cents: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Receipt {
    pub order: Order,
    pub authorization: String,
}

#[workflow]
#[derive(Default)]
pub struct OrderWorkflow;

#[workflow_methods]
impl OrderWorkflow {
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>, order: Order) -> WorkflowResult<Receipt> {
        let receipt = ctx
            .execute_activity(
                OrderActivities::charge,
                order,
                ActivityOptions::start_to_close_timeout(Duration::from_secs(30)),
            )
            .await?;
        Ok(receipt)
    }
}

pub struct OrderActivities;

#[activities]
impl OrderActivities {
    #[activity]
    pub async fn charge(_ctx: ActivityContext, order: Order) -> Result<Receipt, ActivityError> {
        Ok(Receipt {
            authorization: format!("auth-{}-{}", order.customer, order.amount_cents),
            order,
        })
    }
}

/// Runs a worker for `task_queue` on its own thread until `stop` is sent.
fn start_worker(
    address: String,
    task_queue: String,
    converter: DataConverter,
) -> (
    tokio::sync::oneshot::Sender<()>,
    std::thread::JoinHandle<()>,
) {
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let runtime = temporalio_sdk::Runtime::from_current_tokio(Default::default()).unwrap();
            let client = tcodec_onboarding::connect(&address, "default", converter)
                .await
                .unwrap();
            let options = temporalio_sdk::WorkerOptions::new(task_queue)
                .register_workflow::<OrderWorkflow>()
                .unwrap()
                .register_activities(OrderActivities)
                .build();
            let mut worker = temporalio_sdk::Worker::new(&runtime, client, options).unwrap();
            let shutdown = worker.shutdown_handle();
            tokio::spawn(async move {
                let _ = stop_rx.await;
                shutdown();
            });
            ready_tx.send(()).unwrap();
            worker.run().await.unwrap();
        });
    });
    ready_rx.recv().unwrap();
    (stop, thread)
}

async fn run_round(client: &Client, task_queue: &str, workflows: usize) -> f64 {
    let started = Instant::now();
    let mut handles = Vec::new();
    for i in 0..workflows {
        let order = Order {
            customer: format!("customer-{i}"),
            card_number: "4111 1111 1111 1111".into(),
            items: vec!["book".into(), "lamp".into(), format!("gift card {i}")],
            amount_cents: 1000 + i as u64,
        };
        let client = client.clone();
        let (task_queue, id) = (task_queue.to_owned(), format!("{task_queue}-{i}"));
        handles.push(tokio::spawn(async move {
            let handle = client
                .start_workflow(
                    OrderWorkflow::run,
                    order,
                    WorkflowStartOptions::new(task_queue, id).build(),
                )
                .await
                .unwrap();
            handle
                .get_result(WorkflowGetResultOptions::default())
                .await
                .unwrap()
        }));
    }
    for h in handles {
        let receipt = h.await.unwrap();
        assert!(receipt.authorization.starts_with("auth-customer-"));
    }
    workflows as f64 / started.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap())
        .collect();
    let workflows = args.first().copied().unwrap_or(200);
    let rounds = args.get(1).copied().unwrap_or(3);
    let keys = support::Keys::new();
    let temporal = support::temporal::DevServer::start();
    let codec = tcodec_worker::WorkerCodec::open(&keys.keyring, &keys.settings()).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut rates: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let names = ["plain (SDK default)", "tcodec"];
    for round in 0..rounds {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for mode in order {
            let converter = if mode == 0 {
                DataConverter::default()
            } else {
                codec.data_converter()
            };
            let task_queue = format!("overhead-{mode}-{round}");
            let (stop, thread) = start_worker(
                temporal.address.clone(),
                task_queue.clone(),
                converter.clone(),
            );
            let rate = rt.block_on(async {
                let client = tcodec_onboarding::connect(&temporal.address, "default", converter)
                    .await
                    .unwrap();
                run_round(&client, &task_queue, workflows).await
            });
            let _ = stop.send(());
            thread.join().unwrap();
            println!("round {round}: {:<20} {rate:8.1} workflows/s", names[mode]);
            rates[mode].push(rate);
        }
    }
    let (plain, sealed) = (median(rates[0].clone()), median(rates[1].clone()));
    println!();
    println!("| worker | workflows/s (median of {rounds} rounds of {workflows}) | ratio |");
    println!("|---|---:|---:|");
    println!("| {} | {plain:.1} | 1.00 |", names[0]);
    println!("| {} | {sealed:.1} | {:.2} |", names[1], sealed / plain);
}
