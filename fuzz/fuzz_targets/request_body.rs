//! The codec protocol's request body: arbitrary bytes as the `{"payloads": [...]}`
//! JSON the Temporal UI and CLI send, through `tcodec_json::process` both ways,
//! and under tight limits (the parser stopping at the payload after the
//! limit, the decoded and answer budgets).
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use tcodec::Codec;
use tcodec::keys::{KeyId, MemoryKeyring, SecretBytes32};
use tcodec_json::{Direction, Limits, PayloadsJson, process};

fn codec() -> &'static Codec {
    static CODEC: OnceLock<Codec> = OnceLock::new();
    CODEC.get_or_init(|| {
        let id = KeyId::new("fuzz").expect("a valid key id");
        Codec::new(Arc::new(MemoryKeyring::with_primary(id, SecretBytes32::new([9; 32]))))
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(request) = PayloadsJson::parse(data) else {
        return;
    };
    let count = request.payloads.len();
    // Whatever a decode answers has the request's payloads.
    if let Ok(answer) = process(codec(), Direction::Decode, data, &Limits::payloads(usize::MAX)) {
        assert_eq!(answer.payloads, count);
        let back = PayloadsJson::parse(&answer.body).expect("an answer parses");
        assert_eq!(back.payloads.len(), count);
    }
    // A body that encodes decodes again, to as many payloads.
    if let Ok(sealed) = process(codec(), Direction::Encode, data, &Limits::payloads(usize::MAX)) {
        assert_eq!(sealed.payloads, count);
        let opened = process(codec(), Direction::Decode, &sealed.body, &Limits::payloads(usize::MAX))
            .expect("what tcodec sealed opens");
        assert_eq!(opened.payloads, count);
    }
    // Under tight limits: the parser agrees with the full parse about the
    // count, and whatever passes the budgets is a whole answer.
    let tight = Limits {
        max_payloads: 2,
        max_decoded_bytes: 256,
        max_answer_bytes: 4096,
        cancelled: None,
    };
    match process(codec(), Direction::Decode, data, &tight) {
        Ok(answer) => {
            assert!(count <= 2 && answer.payloads == count);
            assert!(answer.body.len() <= 4096);
        }
        Err(tcodec_json::ProcessError::TooManyPayloads { .. }) => assert!(count > 2),
        Err(_) => {}
    }
});
