//! The keyring document parser and validator: arbitrary bytes as a keyring
//! file. A document that parses must serialize and parse back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcodec_keys::document::KeyringDocument;

fuzz_target!(|data: &[u8]| {
    if let Ok(doc) = KeyringDocument::from_json(data) {
        let again = KeyringDocument::from_json(&doc.to_json()).expect("a valid document re-parses");
        assert_eq!(again.to_json(), doc.to_json());
    }
});
