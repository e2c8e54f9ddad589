//! One line of `pdchannels mcp`'s stdin (or one `/mcp` body): whatever the bytes, the classifier
//! answers (a message, a blank line, or a fault with its JSON-RPC error) and never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|line: &[u8]| {
    if let pdchannels_mcp::Line::Fault(fault) = pdchannels_mcp::classify_line(line) {
        // The answer written back must serialise to one line of JSON.
        let frame = serde_json::to_string(&fault.frame()).expect("a JSON value serialises");
        assert!(!frame.contains('\n'), "a frame is one line: {frame}");
    }
});
