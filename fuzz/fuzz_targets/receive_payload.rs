//! Request bodies as the hub and MCP read them: JSON, then the model's `parse` of each payload.
//! Whatever parses must serialise, and a parsed message must parse again unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pdchannels_model::{AddChannel, DeleteChannel, DeleteConversation, Limits, ReceiveMessage};

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let limits = Limits::default();
    if let Ok(message) = ReceiveMessage::parse(&value, &limits) {
        let wire = serde_json::to_value(&message).expect("a parsed message serialises");
        let again = ReceiveMessage::parse(&wire, &limits).expect("its wire form parses");
        assert_eq!(serde_json::to_value(&again).unwrap(), wire);
    }
    if let Ok(channel) = AddChannel::parse(&value, &limits) {
        serde_json::to_value(&channel).expect("a parsed channel serialises");
    }
    let _ = DeleteChannel::parse(&value, &limits);
    let _ = DeleteConversation::parse(&value, &limits);
});
