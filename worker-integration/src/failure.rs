//! [`EncryptingFailureConverter`]: failure messages and stack traces travel
//! encrypted.
//!
//! Temporal stores a failure's `message` and `stack_trace` in plaintext unless
//! the failure converter moves them into `encoded_attributes`, a payload that
//! the codec then seals. The SDK's `DefaultFailureConverter::new(true)` does
//! that, but it also re-encodes causes that are already encoded (an activity
//! failure that came back from the server, wrapped by the workflow's own
//! failure): the cause's message becomes the placeholder "Encoded failure"
//! and the real one is lost. This converter encodes only failures whose
//! `encoded_attributes` is still empty.
//!
//! Decoding, it refuses by default a failure whose message came in plaintext
//! where a tcodec worker would have sealed it: an application failure (what
//! workflow and activity code raise and read), or one of no kind. Whoever runs
//! the Temporal server could otherwise put words of their choosing in front
//! of workflow code. Failures Temporal itself makes pass: timeouts,
//! cancellations, terminations, server errors, resets, the wrappers around an
//! activity's, child workflow's or Nexus operation's failure, and the few
//! application failures the SDK's core writes (a worker shutting down, limits,
//! a failed signal or cancel of another workflow). A migration that allows
//! plaintext payloads allows plaintext failures too.

use serde::Serialize;
use tcodec::{Codec, Plaintext};
use temporalio_common::data_converters::{
    DefaultFailureConverter, FailureConverter, GenericPayloadConverter, PayloadConversionError,
    PayloadConverter, SerializationContext, SerializationContextData,
};
use temporalio_common::error::{IncomingError, OutgoingError};
use temporalio_common::protos::temporal::api::enums::v1::{
    CancelExternalWorkflowExecutionFailedCause, SignalExternalWorkflowExecutionFailedCause,
};
use temporalio_common::protos::temporal::api::failure::v1::Failure;
use temporalio_common::protos::temporal::api::failure::v1::failure::FailureInfo;

/// What an encoded failure says in place of its message.
pub const ENCODED_MESSAGE: &str = "Encoded failure";

/// Moves failure messages and stack traces into encrypted attributes, once;
/// refuses failures whose message should have come that way and did not.
#[derive(Debug, Default, Clone, Copy)]
pub struct EncryptingFailureConverter {
    plaintext_messages: bool,
}

impl EncryptingFailureConverter {
    /// Refuses plaintext failure messages (the default).
    pub fn strict() -> Self {
        Self::default()
    }

    /// Accepts plaintext failure messages when `codec`'s decode policy
    /// accepts some plaintext payloads (a migration from workers that sent
    /// both in plaintext).
    pub fn for_codec(codec: &Codec) -> Self {
        Self {
            plaintext_messages: codec.options().policy.plaintext != Plaintext::Refuse,
        }
    }
}

/// A failure whose message came in plaintext where tcodec seals it.
#[derive(Debug, thiserror::Error)]
#[error(
    "a failure ({kind}) arrived with its message in plaintext, not in tcodec-sealed attributes, and the decode policy refuses it; to accept such failures during a migration, allow plaintext payloads (TCODEC_DECODE_ALLOW for a worker)"
)]
pub struct PlaintextFailure {
    /// The failure's kind: its application type, or "no kind".
    pub kind: String,
}

/// Application failure types the SDK's core writes itself, in plaintext:
/// its own, and a failed signal or cancel of another workflow, typed by its
/// cause. Built once.
static WRITTEN_BY_CORE: std::sync::LazyLock<std::collections::HashSet<String>> =
    std::sync::LazyLock::new(|| {
        let causes = (0..32).flat_map(|i| {
            [
                SignalExternalWorkflowExecutionFailedCause::try_from(i)
                    .ok()
                    .map(|c| c.to_string()),
                CancelExternalWorkflowExecutionFailedCause::try_from(i)
                    .ok()
                    .map(|c| c.to_string()),
            ]
        });
        [
            "WorkerShutdown",
            "GrpcMessageTooLarge",
            "RequestTooLarge",
            "PayloadsTooLarge",
        ]
        .into_iter()
        .map(String::from)
        .chain(causes.flatten())
        .collect()
    });

/// Whether the SDK's core writes application failures of type `kind` itself.
fn written_by_core(kind: &str) -> bool {
    WRITTEN_BY_CORE.contains(kind)
}

/// The first failure of the chain whose message should have come sealed and
/// did not (see the module's documentation).
pub fn unsealed_failure(failure: &Failure) -> Option<PlaintextFailure> {
    let mut current = Some(failure);
    while let Some(f) = current {
        let plaintext =
            f.encoded_attributes.is_none() && !(f.message.is_empty() && f.stack_trace.is_empty());
        let kind = match &f.failure_info {
            Some(FailureInfo::ApplicationFailureInfo(info)) if !written_by_core(&info.r#type) => {
                Some(format!("application failure of type {:?}", info.r#type))
            }
            None => Some("no kind".to_owned()),
            Some(_) => None,
        };
        if let (true, Some(kind)) = (plaintext, kind) {
            return Some(PlaintextFailure { kind });
        }
        current = f.cause.as_deref();
    }
    None
}

/// The attributes' JSON, as every Temporal SDK writes it.
#[derive(Serialize)]
struct Attributes {
    message: String,
    stack_trace: String,
}

/// Moves `message` and `stack_trace` of `failure` and of each of its causes
/// into `encoded_attributes`, skipping those already encoded.
pub fn encode_attributes(
    failure: &mut Failure,
    converter: &PayloadConverter,
    context: &SerializationContextData,
) -> Result<(), PayloadConversionError> {
    let mut current = Some(failure);
    while let Some(f) = current {
        if f.encoded_attributes.is_none() {
            let attributes = Attributes {
                message: std::mem::take(&mut f.message),
                stack_trace: std::mem::take(&mut f.stack_trace),
            };
            f.encoded_attributes = Some(
                converter
                    .to_payload(&SerializationContext::new(context, converter), &attributes)?,
            );
            f.message = ENCODED_MESSAGE.to_owned();
        }
        current = f.cause.as_deref_mut();
    }
    Ok(())
}

impl FailureConverter for EncryptingFailureConverter {
    fn to_failure(
        &self,
        error: OutgoingError,
        payload_converter: &PayloadConverter,
        context: &SerializationContextData,
    ) -> Failure {
        let mut failure =
            DefaultFailureConverter::new(false).to_failure(error, payload_converter, context);
        if encode_attributes(&mut failure, payload_converter, context).is_err() {
            // Never send the plaintext instead.
            failure = Failure::application_failure(
                "Failed encoding failure attributes".to_owned(),
                false,
            );
        }
        failure
    }

    fn to_error(
        &self,
        failure: Failure,
        payload_converter: &PayloadConverter,
        context: &SerializationContextData,
    ) -> Result<IncomingError, PayloadConversionError> {
        if !self.plaintext_messages
            && let Some(refused) = unsealed_failure(&failure)
        {
            return Err(PayloadConversionError::EncodingError(Box::new(refused)));
        }
        // Decoding restores encoded attributes wherever they are set.
        DefaultFailureConverter::new(false).to_error(failure, payload_converter, context)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn failure(message: &str, cause: Option<Failure>) -> Failure {
        let mut f = Failure::application_failure(message.to_owned(), false);
        f.stack_trace = format!("at {message}");
        f.cause = cause.map(Box::new);
        f
    }

    fn attributes(f: &Failure) -> serde_json::Value {
        serde_json::from_slice(&f.encoded_attributes.as_ref().unwrap().data).unwrap()
    }

    #[test]
    fn messages_and_stack_traces_move_into_encoded_attributes() {
        let converter = PayloadConverter::default();
        let mut f = failure("card 4111 declined", Some(failure("issuer said no", None)));
        encode_attributes(&mut f, &converter, &SerializationContextData::None).unwrap();
        assert_eq!(f.message, ENCODED_MESSAGE);
        assert_eq!(f.stack_trace, "");
        assert_eq!(attributes(&f)["message"], "card 4111 declined");
        assert_eq!(attributes(&f)["stack_trace"], "at card 4111 declined");
        let cause = f.cause.as_deref().unwrap();
        assert_eq!(cause.message, ENCODED_MESSAGE);
        assert_eq!(attributes(cause)["message"], "issuer said no");
    }

    #[test]
    fn already_encoded_causes_keep_their_message() {
        let converter = PayloadConverter::default();
        let ctx = SerializationContextData::None;
        // A cause that arrived encoded (as an activity failure does).
        let mut cause = failure("card 4111 declined", None);
        encode_attributes(&mut cause, &converter, &ctx).unwrap();
        let mut ours = failure("onboarding failed", Some(cause.clone()));
        encode_attributes(&mut ours, &converter, &ctx).unwrap();
        assert_eq!(
            ours.cause.as_deref(),
            Some(&cause),
            "the cause is left as it was"
        );
        assert_eq!(
            attributes(ours.cause.as_deref().unwrap())["message"],
            "card 4111 declined"
        );
        assert_eq!(attributes(&ours)["message"], "onboarding failed");
    }

    #[test]
    fn decoding_restores_the_message() {
        let converter = PayloadConverter::default();
        let ctx = SerializationContextData::None;
        let mut f = failure("card 4111 declined", None);
        encode_attributes(&mut f, &converter, &ctx).unwrap();
        let error = EncryptingFailureConverter::strict()
            .to_error(f, &converter, &ctx)
            .unwrap();
        assert!(error.to_string().contains("card 4111 declined"), "{error}");
    }

    fn refused(f: Failure) -> Option<String> {
        let converter = PayloadConverter::default();
        let ctx = SerializationContextData::None;
        match EncryptingFailureConverter::strict().to_error(f, &converter, &ctx) {
            Ok(_) => None,
            Err(e) => Some(e.to_string()),
        }
    }

    #[test]
    fn a_plaintext_application_failure_is_refused_naming_the_setting() {
        let forged = failure("transfer approved by compliance", None);
        let err = refused(forged).expect("refused");
        assert!(
            err.contains("plaintext") && err.contains("TCODEC_DECODE_ALLOW"),
            "{err}"
        );
        assert!(!err.contains("transfer approved"), "{err}");
        // Hidden as the cause of an activity failure (a wrapper Temporal makes).
        let mut wrapper = Failure {
            message: "Activity task failed".into(),
            failure_info: Some(FailureInfo::ActivityFailureInfo(Default::default())),
            ..Default::default()
        };
        wrapper.cause = Some(Box::new(failure("forged", None)));
        assert!(refused(wrapper.clone()).is_some());
        // With a sealed cause, the wrapper passes.
        let converter = PayloadConverter::default();
        let mut sealed = failure("real", None);
        encode_attributes(&mut sealed, &converter, &SerializationContextData::None).unwrap();
        wrapper.cause = Some(Box::new(sealed));
        assert_eq!(refused(wrapper), None);
        // A failure of no kind with a message is refused too.
        let bare = Failure {
            message: "forged".into(),
            ..Default::default()
        };
        assert!(refused(bare).is_some());
    }

    #[test]
    fn failures_temporal_makes_pass_in_plaintext() {
        let timeout = Failure {
            message: "activity StartToClose timeout".into(),
            failure_info: Some(FailureInfo::TimeoutFailureInfo(Default::default())),
            ..Default::default()
        };
        assert_eq!(refused(timeout), None);
        let terminated = Failure {
            message: "terminated by operator".into(),
            failure_info: Some(FailureInfo::TerminatedFailureInfo(Default::default())),
            ..Default::default()
        };
        assert_eq!(refused(terminated), None);
        for kind in ["WorkerShutdown", "ExternalWorkflowExecutionNotFound"] {
            let mut f = Failure::application_failure("core says so".into(), false);
            if let Some(FailureInfo::ApplicationFailureInfo(info)) = &mut f.failure_info {
                info.r#type = kind.into();
            }
            assert_eq!(refused(f), None, "{kind}");
        }
    }

    #[test]
    fn a_migration_that_allows_plaintext_allows_plaintext_failures() {
        use std::sync::Arc;
        use tcodec::keys::{KeyId, MemoryKeyring, SecretBytes32};
        use tcodec::{CodecOptions, DecodePolicy};
        let keyring =
            MemoryKeyring::with_primary(KeyId::new("k1").unwrap(), SecretBytes32::new([1; 32]));
        let codec = |policy| {
            Codec::with_options(
                Arc::new(keyring.clone()),
                CodecOptions::default().with_decode_policy(policy),
            )
        };
        let converter = PayloadConverter::default();
        let ctx = SerializationContextData::None;
        let migrating = EncryptingFailureConverter::for_codec(&codec(
            DecodePolicy::strict().allow("json/plain"),
        ));
        assert!(
            migrating
                .to_error(failure("old worker", None), &converter, &ctx)
                .is_ok()
        );
        let strict = EncryptingFailureConverter::for_codec(&codec(DecodePolicy::strict()));
        assert!(
            strict
                .to_error(failure("old worker", None), &converter, &ctx)
                .is_err()
        );
    }
}
