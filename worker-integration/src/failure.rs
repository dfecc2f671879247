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

use serde::Serialize;
use temporalio_common::data_converters::{
    DefaultFailureConverter, FailureConverter, GenericPayloadConverter, PayloadConversionError,
    PayloadConverter, SerializationContext, SerializationContextData,
};
use temporalio_common::error::{IncomingError, OutgoingError};
use temporalio_common::protos::temporal::api::failure::v1::Failure;

/// What an encoded failure says in place of its message.
pub const ENCODED_MESSAGE: &str = "Encoded failure";

/// Moves failure messages and stack traces into encrypted attributes, once.
#[derive(Debug, Default, Clone, Copy)]
pub struct EncryptingFailureConverter;

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
        let error = EncryptingFailureConverter
            .to_error(f, &converter, &ctx)
            .unwrap();
        assert!(error.to_string().contains("card 4111 declined"), "{error}");
    }
}
