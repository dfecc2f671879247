//! The codec server's request body parser: arbitrary bytes as the
//! `{"payloads": [...]}` JSON the Temporal UI and CLI send, then as payloads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcodec_server::json::PayloadsJson;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = PayloadsJson::parse(data) else {
        return;
    };
    let count = request.payloads.len();
    // Passed through whole, the answer has the request's payloads.
    let Ok((kept, answer)) = request.clone().split(|_| false) else {
        return;
    };
    assert!(kept.is_empty());
    let body = answer.to_json(&[]).expect("a response serializes");
    let back = PayloadsJson::parse(&body).expect("a response parses");
    assert_eq!(back.payloads.len(), count);
    // Taken whole, the same payloads decode, and handed back in place they
    // answer the same number.
    let (payloads, answer) = request.split(|_| true).expect("checked above");
    assert_eq!(payloads.len(), count);
    let body = answer.to_json(&payloads).expect("a response serializes");
    assert_eq!(PayloadsJson::parse(&body).expect("parses").payloads.len(), count);
});
