#![doc = include_str!("../README.md")]
//! The reference workflow: onboarding a customer, with the kind of data a
//! platform team must keep from the Temporal server.
//!
//! 1. `verify_identity` checks the customer. Its first attempt fails with a
//!    message naming the customer and card (as real error messages do); the
//!    retry succeeds.
//! 2. The workflow waits for the `confirm_address` signal, which carries the
//!    customer's confirmed postal address.
//! 3. `open_account` opens the account; the result names the customer, the
//!    card's last digits and the address.
//!
//! The starter also sets a memo with the customer's name and email. A
//! customer may send a scan of an identity document (`onboarding-starter run
//! ID --document FILE`): megabytes, more than a Temporal history holds, which
//! a worker with External Storage (`TCODEC_STORAGE_BUCKET`) keeps in S3,
//! sealed; `open_account` returns its SHA-256.
#![allow(missing_docs)] // the workflow macros generate undocumented items

use std::time::Duration;

use serde::{Deserialize, Serialize};
use temporalio_client::{
    Client, WorkflowGetResultOptions, WorkflowSignalOptions, WorkflowStartOptions,
};
use temporalio_common::{MemoValues, RetryPolicy};
use temporalio_macros::{activities, workflow, workflow_methods};
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use temporalio_sdk::{
    ActivityOptions, ApplicationFailure, SyncWorkflowContext, WorkerOptions, WorkflowContext,
    WorkflowResult,
};

/// The task queue the reference worker polls.
pub const TASK_QUEUE: &str = "tcodec-onboarding";

/// A customer, as the starter sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    pub name: String,
    pub email: String,
    pub card_number: String,
    pub address: String,
    /// A scan of an identity document, base64, if the customer sent one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id_document: String,
}

impl Customer {
    /// The demo's customer.
    pub fn example() -> Self {
        Self {
            name: "Ada Lovelace".into(),
            email: "ada@example.com".into(),
            card_number: "4111 1111 1111 1111".into(),
            address: "12 Crescent Road, Bath".into(),
            id_document: String::new(),
        }
    }

    fn card_last4(&self) -> String {
        let digits: String = self
            .card_number
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        digits[digits.len().saturating_sub(4)..].to_owned()
    }
}

/// What `open_account` returns, and the workflow's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub account_id: String,
    pub holder: String,
    pub card_last4: String,
    pub address: String,
    pub welcome: String,
    /// The SHA-256 (hex) of the identity document the account was opened with.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub document_sha256: String,
}

#[workflow]
#[derive(Default)]
pub struct OnboardingWorkflow {
    confirmed_address: Option<String>,
}

#[workflow_methods]
impl OnboardingWorkflow {
    #[run]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        customer: Customer,
    ) -> WorkflowResult<Account> {
        let options = ActivityOptions::with_start_to_close_timeout(Duration::from_secs(30))
            .retry_policy(
                RetryPolicy::builder()
                    .initial_interval(Duration::from_millis(200))
                    .maximum_attempts(5)
                    .build(),
            )
            .build();
        ctx.execute_activity(
            OnboardingActivities::verify_identity,
            customer.clone(),
            options.clone(),
        )
        .await?;
        ctx.wait_condition(|s| s.confirmed_address.is_some())
            .await?;
        let address = ctx
            .state(|s| s.confirmed_address.clone())
            .unwrap_or_default();
        let customer = Customer {
            address,
            ..customer
        };
        let account = ctx
            .execute_activity(OnboardingActivities::open_account, customer, options)
            .await?;
        Ok(account)
    }

    /// The customer confirmed (or corrected) their postal address.
    #[signal]
    pub fn confirm_address(&mut self, _ctx: &mut SyncWorkflowContext<Self>, address: String) {
        self.confirmed_address = Some(address);
    }
}

pub struct OnboardingActivities;

#[activities]
impl OnboardingActivities {
    /// Fails its first attempt, as a flaky identity provider would, with a
    /// message that holds the customer's data.
    #[activity]
    pub async fn verify_identity(
        ctx: ActivityContext,
        customer: Customer,
    ) -> Result<String, ActivityError> {
        if ctx.info().attempt <= 1 {
            return Err(ActivityError::application(ApplicationFailure::new(
                format!(
                    "identity check for {} with card {} timed out at the provider",
                    customer.name, customer.card_number
                ),
            )));
        }
        Ok(format!("verified {}", customer.email))
    }

    #[activity]
    pub async fn open_account(
        _ctx: ActivityContext,
        customer: Customer,
    ) -> Result<Account, ActivityError> {
        let last4 = customer.card_last4();
        let document_sha256 = if customer.id_document.is_empty() {
            String::new()
        } else {
            let digest =
                ring::digest::digest(&ring::digest::SHA256, customer.id_document.as_bytes());
            digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
        };
        Ok(Account {
            document_sha256,
            account_id: format!("acct-{last4}"),
            welcome: format!(
                "Welcome, {}! Your card ending {last4} is active; statements go to {}.",
                customer.name, customer.address
            ),
            holder: customer.name,
            card_last4: last4,
            address: customer.address,
        })
    }
}

/// The address the customer confirms by signal.
pub const CONFIRMED_ADDRESS: &str = "7 Royal Crescent, Bath";

/// Where the reference binaries connect, from the environment:
/// `TEMPORAL_ADDRESS` (default `127.0.0.1:7233`) and `TEMPORAL_NAMESPACE`
/// (default `default`).
pub fn target_from_env() -> (String, String) {
    (
        std::env::var("TEMPORAL_ADDRESS").unwrap_or_else(|_| "127.0.0.1:7233".into()),
        std::env::var("TEMPORAL_NAMESPACE").unwrap_or_else(|_| "default".into()),
    )
}

/// The example's errors: any error, with a message saying what was being done.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// Wraps an error with what was being done, keeping it as the source.
fn doing(what: String) -> impl FnOnce(Error) -> Error {
    move |source| format!("{what}: {source}").into()
}

/// A client of the Temporal server at `address` (`host:port` or a URL) for
/// `namespace`, whose payloads go through `data_converter`.
pub async fn connect(
    address: &str,
    namespace: &str,
    data_converter: temporalio_common::data_converters::DataConverter,
) -> Result<Client, Error> {
    let url = if address.contains("://") {
        address.to_owned()
    } else {
        format!("http://{address}")
    };
    let url = temporalio_client::Url::parse(&url)
        .map_err(|e| format!("{url:?} is not a Temporal server address: {e}"))?;
    let connection = temporalio_client::Connection::connect(
        temporalio_client::ConnectionOptions::new(url.clone())
            .identity(format!("tcodec-onboarding@{}", std::process::id()))
            .build(),
    )
    .await
    .map_err(|e| doing(format!("cannot connect to the Temporal server at {url}"))(e.into()))?;
    let options = temporalio_client::ClientOptions::new(namespace)
        .data_converter(data_converter)
        .build();
    Ok(Client::new(connection, options)?)
}

/// The reference worker's options: the onboarding workflow and activities on
/// [`TASK_QUEUE`].
pub fn worker_options() -> Result<WorkerOptions, Error> {
    Ok(WorkerOptions::new(TASK_QUEUE)
        .register_workflow::<OnboardingWorkflow>()?
        .register_activities(OnboardingActivities)
        .build())
}

/// Starts onboarding `customer` as workflow `id`, with a memo naming them.
pub async fn start(client: &Client, id: &str, customer: Customer) -> Result<(), Error> {
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
        .map_err(|e| doing(format!("cannot start workflow {id}"))(e.into()))?;
    Ok(())
}

/// Confirms the customer's address ([`CONFIRMED_ADDRESS`]) by signal.
pub async fn confirm_address(client: &Client, id: &str) -> Result<(), Error> {
    client
        .get_workflow_handle::<OnboardingWorkflow>(id)
        .signal(
            OnboardingWorkflow::confirm_address,
            CONFIRMED_ADDRESS.to_owned(),
            WorkflowSignalOptions::default(),
        )
        .await
        .map_err(|e| doing(format!("cannot signal workflow {id}"))(e.into()))?;
    Ok(())
}

/// Waits for workflow `id` to complete and returns its result.
pub async fn result(client: &Client, id: &str) -> Result<Account, Error> {
    client
        .get_workflow_handle::<OnboardingWorkflow>(id)
        .get_result(WorkflowGetResultOptions::default())
        .await
        .map_err(|e| doing(format!("workflow {id} did not complete"))(e.into()))
}
