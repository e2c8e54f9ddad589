//! The read API's `cursor` parameter, decoded as each route asks (1 or 2 fields).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    for fields in 1..=2 {
        if let Some(parts) = pdchannels_hub::decode_cursor(text, fields) {
            assert_eq!(parts.len(), fields);
        }
    }
});
