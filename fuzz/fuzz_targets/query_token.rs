//! The `api_token` query parameter, from any query string the HTTP layer lets through.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|query: &str| {
    let _ = pdchannels_hub::api_token_from_query(query);
});
