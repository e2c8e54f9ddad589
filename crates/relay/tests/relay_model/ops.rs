//! The operations a case is made of, over small id spaces so that ids repeat and collide: 2
//! channels, 3 conversations, 4 message ids (shared by all conversations, so the same id in
//! another conversation is a conflict), 2 texts, 4 statuses, 2 creation times.

use std::fmt;

use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{Value, json};

const CHANNELS: [&str; 2] = ["wa", "fb"];
const CHANNEL_NAMES: [&str; 2] = ["Sales", "Support"];
const PROVIDER_TYPES: [&str; 3] = ["whatsapp", "facebook", "other"];
const STATUSES: [&str; 4] = ["sent", "delivered", "read", "failed"];
const CREATED_AT: [&str; 2] = ["2024-05-01T10:00:00.000Z", "2024-05-01T10:00:01.000Z"];

/// One Channels API call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    AddChannel {
        channel: usize,
        name: usize,
        provider_type: usize,
    },
    DeleteChannel {
        channel: usize,
    },
    Receive {
        channel: usize,
        conversation: usize,
        message: usize,
        sender: usize,
        text: usize,
        status: usize,
        created_at: usize,
    },
    DeleteConversation {
        channel: usize,
        conversation: usize,
    },
}

/// A fault the proxy in front of the upstream does to one attempt of a call, or a crash of the
/// relaying side while the call is in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trouble {
    /// The upstream (the proxy, for it) answers this 5xx; nothing applied.
    ServerError(u16),
    /// The connection breaks before the upstream got the call; nothing applied.
    Drop,
    /// The upstream applies the call and the connection breaks before the answer.
    LoseAnswer,
    /// The upstream applies the call and the answer never comes: the client's timeout.
    Timeout,
    /// The upstream answers this 3xx to another host; nothing applied.
    Redirect(u16),
    /// The upstream applies the call; before its answer arrives the relaying hub is killed and
    /// started again on the same database.
    Crash,
}

/// A call as generated: a fresh one, or a repeat of an earlier one (resolved by [`resolve`]).
#[derive(Debug, Clone)]
pub enum Planned {
    Fresh(Call),
    Repeat(Index),
}

/// A call and the troubles its first attempts meet, in order (later attempts go through).
#[derive(Debug, Clone)]
pub struct Step {
    pub call: Call,
    pub troubles: Vec<Trouble>,
}

fn call() -> impl Strategy<Value = Call> {
    prop_oneof![
        2 => (0..2usize, 0..2usize, 0..3usize).prop_map(|(channel, name, provider_type)| {
            Call::AddChannel { channel, name, provider_type }
        }),
        1 => (0..2usize).prop_map(|channel| Call::DeleteChannel { channel }),
        8 => (0..2usize, 0..3usize, 0..4usize, 0..2usize, 0..2usize, 0..4usize, 0..2usize)
            .prop_map(|(channel, conversation, message, sender, text, status, created_at)| {
                Call::Receive { channel, conversation, message, sender, text, status, created_at }
            }),
        1 => (0..2usize, 0..3usize)
            .prop_map(|(channel, conversation)| Call::DeleteConversation { channel, conversation }),
    ]
}

fn trouble() -> impl Strategy<Value = Trouble> {
    prop_oneof![
        4 => prop::sample::select(vec![500u16, 502, 503]).prop_map(Trouble::ServerError),
        2 => Just(Trouble::Drop),
        3 => Just(Trouble::LoseAnswer),
        1 => Just(Trouble::Timeout),
        2 => prop::sample::select(vec![301u16, 302, 307]).prop_map(Trouble::Redirect),
        1 => Just(Trouble::Crash),
    ]
}

fn planned() -> impl Strategy<Value = Planned> {
    prop_oneof![
        4 => call().prop_map(Planned::Fresh),
        1 => any::<Index>().prop_map(Planned::Repeat),
    ]
}

/// Up to `max_len` steps; most meet no trouble.
pub fn steps(max_len: usize) -> impl Strategy<Value = Vec<(Planned, Vec<Trouble>)>> {
    let troubles = prop_oneof![
        5 => Just(Vec::new()),
        2 => prop::collection::vec(trouble(), 1..=2),
    ];
    prop::collection::vec((planned(), troubles), 1..=max_len)
}

/// Turns repeats into the calls they repeat (a repeat as the first step adds the first channel).
pub fn resolve(planned: &[(Planned, Vec<Trouble>)]) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::with_capacity(planned.len());
    for (plan, troubles) in planned {
        let call = match plan {
            Planned::Fresh(call) => call.clone(),
            Planned::Repeat(index) if steps.is_empty() => Call::AddChannel {
                channel: 0,
                name: index.index(CHANNEL_NAMES.len()),
                provider_type: 0,
            },
            Planned::Repeat(index) => steps[index.index(steps.len())].call.clone(),
        };
        steps.push(Step {
            call,
            troubles: troubles.clone(),
        });
    }
    steps
}

/// An HTTP request: method, path under `/v1`, JSON body.
pub struct Request {
    pub method: &'static str,
    pub path: String,
    pub body: Option<Value>,
}

impl Call {
    pub fn request(&self) -> Request {
        match *self {
            Self::AddChannel {
                channel,
                name,
                provider_type,
            } => Request {
                method: "POST",
                path: "/channels".to_owned(),
                body: Some(json!({
                    "name": CHANNEL_NAMES[name],
                    "provider_channel_id": CHANNELS[channel],
                    "provider_type": PROVIDER_TYPES[provider_type],
                })),
            },
            Self::DeleteChannel { channel } => Request {
                method: "DELETE",
                path: format!("/channels/{}", CHANNELS[channel]),
                body: None,
            },
            Self::Receive {
                channel,
                conversation,
                message,
                sender,
                text,
                status,
                created_at,
            } => Request {
                method: "POST",
                path: "/channels/messages/receive".to_owned(),
                body: Some(json!({
                    "id": format!("m{message}"),
                    "channel_id": CHANNELS[channel],
                    "conversation_id": format!("c{conversation}"),
                    "sender_id": format!("s{sender}"),
                    "message": format!("text {text}"),
                    "status": STATUSES[status],
                    "created_at": CREATED_AT[created_at],
                })),
            },
            Self::DeleteConversation {
                channel,
                conversation,
            } => Request {
                method: "DELETE",
                path: format!(
                    "/channels/{}/conversations/c{conversation}",
                    CHANNELS[channel]
                ),
                body: None,
            },
        }
    }
}

/// The channels' provider ids, for reading a hub's state back.
pub fn channel_ids() -> &'static [&'static str] {
    &CHANNELS
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::AddChannel {
                channel,
                name,
                provider_type,
            } => write!(
                f,
                "add channel {} ({}, {})",
                CHANNELS[channel], CHANNEL_NAMES[name], PROVIDER_TYPES[provider_type]
            ),
            Self::DeleteChannel { channel } => write!(f, "delete channel {}", CHANNELS[channel]),
            Self::Receive {
                channel,
                conversation,
                message,
                sender,
                text,
                status,
                created_at,
            } => write!(
                f,
                "receive {}/c{conversation}/m{message} from s{sender}: \"text {text}\" {} at {}",
                CHANNELS[channel], STATUSES[status], CREATED_AT[created_at]
            ),
            Self::DeleteConversation {
                channel,
                conversation,
            } => write!(
                f,
                "delete conversation {}/c{conversation}",
                CHANNELS[channel]
            ),
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.call)?;
        if !self.troubles.is_empty() {
            write!(f, "  [troubles: {:?}]", self.troubles)?;
        }
        Ok(())
    }
}
