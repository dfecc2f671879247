//! The codec server's request body parser: arbitrary bytes as the
//! `{"payloads": [...]}` JSON the Temporal UI and CLI send, then as payloads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcodec_server::json::PayloadsJson;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = serde_json::from_slice::<PayloadsJson>(data) else {
        return;
    };
    if let Ok(payloads) = request.to_payloads() {
        // Passing them straight back must reproduce what came in.
        let response = request.respond(&payloads, payloads.clone());
        assert_eq!(response.payloads.len(), request.payloads.len());
        let _ = serde_json::to_vec(&response).expect("a response serializes");
    }
});
