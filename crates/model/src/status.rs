//! Message status and the order in which it may change.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where a message is in its life. Statuses only move forward:
/// `sent` < `delivered` < `read`, and `failed` may follow `sent` or `delivered`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MessageStatus {
    /// Sent by the sender.
    Sent,
    /// Delivered to the recipient's device.
    Delivered,
    /// Read by the recipient.
    Read,
    /// Could not be delivered.
    Failed,
}

impl MessageStatus {
    /// Every status, in the order they are listed in the contract.
    pub const ALL: [Self; 4] = [Self::Sent, Self::Delivered, Self::Read, Self::Failed];

    /// Parses the wire form; the error names the accepted values.
    pub fn parse(value: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == value)
            .ok_or_else(|| {
                format!("must be one of `sent`, `delivered`, `read`, `failed`; got {value:?}")
            })
    }

    /// The wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Read => "read",
            Self::Failed => "failed",
        }
    }

    /// Whether a message whose stored status is `self` may move to `next`.
    ///
    /// A status update that arrives late (a `delivered` after the `read`) must not undo the
    /// newer state, so backward moves are refused here and ignored by the store.
    pub fn may_become(self, next: Self) -> bool {
        use MessageStatus::{Delivered, Failed, Read, Sent};
        matches!(
            (self, next),
            (Sent, Delivered | Read | Failed) | (Delivered, Read | Failed)
        )
    }

    /// The status a message has after `next` arrives for a message stored with `self`.
    pub fn merge(self, next: Self) -> Self {
        if self.may_become(next) { next } else { self }
    }
}

impl fmt::Display for MessageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::MessageStatus::{self, *};

    #[test]
    fn parses_the_four_statuses_and_names_them_on_error() {
        for s in MessageStatus::ALL {
            assert_eq!(MessageStatus::parse(s.as_str()), Ok(s));
        }
        assert_eq!(
            MessageStatus::parse("seen").unwrap_err(),
            "must be one of `sent`, `delivered`, `read`, `failed`; got \"seen\""
        );
        assert!(MessageStatus::parse("SENT").is_err());
    }

    #[test]
    fn moves_only_forward() {
        let allowed = [
            (Sent, Delivered),
            (Sent, Read),
            (Sent, Failed),
            (Delivered, Read),
            (Delivered, Failed),
        ];
        for from in MessageStatus::ALL {
            for to in MessageStatus::ALL {
                assert_eq!(
                    from.may_become(to),
                    allowed.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
        }
    }

    #[test]
    fn merge_keeps_the_newer_state() {
        assert_eq!(Read.merge(Delivered), Read);
        assert_eq!(Delivered.merge(Read), Read);
        assert_eq!(Read.merge(Failed), Read);
        assert_eq!(Failed.merge(Read), Failed);
        assert_eq!(Sent.merge(Sent), Sent);
    }
}
