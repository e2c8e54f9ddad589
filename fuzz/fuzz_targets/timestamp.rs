//! `created_at` / `reply_by` text: never a panic; what parses is written in the canonical form
//! and reads back as the same instant.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pdchannels_model::Timestamp;

fuzz_target!(|text: &str| {
    if let Ok(t) = Timestamp::parse(text) {
        let canonical = t.to_string();
        assert_eq!(Timestamp::parse(&canonical), Ok(t), "{text:?} -> {canonical}");
        assert_eq!(Timestamp::from_unix_millis(t.unix_millis()), Some(t));
    }
});
