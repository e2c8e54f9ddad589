//! The notes mirror's flags: `pdchannels mirror` (alone, and its `link`, `unlink`, `pending`,
//! `status`) and `serve --mirror`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use pdchannels_mirror::budget::Share;
use secrecy::SecretString;

use super::{OAuthFileArgs, parse_secret};
use crate::duration_flag::DurationRange;

/// `pdchannels mirror`: run the mirror alone, or one of its commands.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct MirrorCommandArgs {
    #[command(subcommand)]
    pub command: Option<MirrorCommand>,

    #[command(flatten)]
    pub run: MirrorRunArgs,

    #[command(flatten)]
    pub oauth_file: OAuthFileArgs,
}

#[derive(Debug, Subcommand)]
pub enum MirrorCommand {
    /// Link a conversation to a Pipedrive person, and a deal or a lead, by hand: its notes go
    /// there from now on (days already written stay where they are), and no look-up replaces the
    /// link. A parked conversation is backfilled: every day it holds becomes a note.
    ///
    /// Example:
    ///   pdchannels mirror link wa-main 5511999990001@s.whatsapp.net --person 42 --deal 7
    #[command(verbatim_doc_comment)]
    Link {
        /// The channel (its provider channel id, as in the API).
        channel: String,
        /// The conversation.
        conversation: String,
        /// The person's id in Pipedrive.
        #[arg(long, value_parser = clap::value_parser!(i64).range(1..))]
        person: i64,
        /// A deal of that person.
        #[arg(long, conflicts_with = "lead", value_parser = clap::value_parser!(i64).range(1..))]
        deal: Option<i64>,
        /// Or a lead (its UUID: the end of the lead's address in Pipedrive).
        #[arg(long, value_parser = parse_lead_id)]
        lead: Option<String>,
        /// The person's organization, shown on the note too.
        #[arg(long, value_parser = clap::value_parser!(i64).range(1..))]
        org: Option<i64>,
    },
    /// Forget a conversation's link: it is looked up again.
    Unlink {
        /// The channel.
        channel: String,
        /// The conversation.
        conversation: String,
    },
    /// The conversations waiting for a person: parked (several Pipedrive persons have the
    /// customer's number or address: the candidates are listed) and unmatched (nobody has it).
    Pending {
        /// At most this many, the most recently looked up first.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=10_000))]
        limit: i64,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The mirror at a glance: conversations linked, parked and unmatched, notes live and
    /// sealed, tokens spent today, and when the next note is written.
    Status {
        /// A JSON object instead of lines.
        #[arg(long)]
        json: bool,
        /// The quiet period the mirror runs with (for the next write's time).
        #[arg(long, default_value = "2m", value_parser = parse_quiet)]
        mirror_quiet: std::time::Duration,
        /// The longest wait the mirror runs with.
        #[arg(long, default_value = "10m", value_parser = parse_max_wait)]
        mirror_max_wait: std::time::Duration,
    },
}

/// How the mirror runs, and where it writes.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Notes mirror")]
pub struct MirrorRunArgs {
    /// The Pipedrive company the notes go to: https://COMPANY.pipedrive.com. With
    /// --pipedrive-oauth it defaults to the login's api_domain.
    #[arg(long, env = "PDCHANNELS_PIPEDRIVE_URL", value_name = "URL")]
    pub pipedrive_url: Option<String>,

    /// A Pipedrive API token (Personal preferences > API). Prefer the environment variable or
    /// --pipedrive-token-file: a flag shows in `ps` to every user of this machine.
    #[arg(
        long,
        env = "PDCHANNELS_PIPEDRIVE_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true,
        value_parser = parse_secret
    )]
    pub pipedrive_token: Option<SecretString>,

    /// A file holding the Pipedrive API token (on one line; keep it owner-only).
    #[arg(long, env = "PDCHANNELS_PIPEDRIVE_TOKEN_FILE", value_name = "PATH")]
    pub pipedrive_token_file: Option<PathBuf>,

    /// Use the login saved by `pdchannels auth login` (OAuth, refreshed as needed) instead of
    /// an API token.
    #[arg(
        long,
        env = "PDCHANNELS_PIPEDRIVE_OAUTH",
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub pipedrive_oauth: bool,

    /// The company's time zone (IANA name, e.g. Europe/London): each note is one
    /// conversation's local day, and times are shown in it. Needed on a database's first
    /// mirror, which records it for good; later runs take the recorded one.
    #[arg(long, env = "PDCHANNELS_TIME_ZONE", value_parser = parse_time_zone)]
    pub time_zone: Option<chrono_tz::Tz>,

    /// The company's country calling code (e.g. 44, 55), for customer numbers written
    /// without one.
    #[arg(long, env = "PDCHANNELS_CALLING_CODE", value_parser = parse_calling_code)]
    pub calling_code: Option<String>,

    /// The mirror's share of the company's daily token budget: a percentage (30%) or tokens
    /// (90000). Past half of it the quiet periods grow; spent, or the company at 25% left,
    /// the mirror stops until Pipedrive's midnight (messages wait in the hub).
    #[arg(long, env = "PDCHANNELS_MIRROR_BUDGET", default_value = "30%", value_parser = Share::parse)]
    pub mirror_budget: Share,

    /// A note is written once its conversation was quiet this long.
    #[arg(long, env = "PDCHANNELS_MIRROR_QUIET", default_value = "2m", value_parser = parse_quiet)]
    pub mirror_quiet: std::time::Duration,

    /// ...or at the latest this long after its first message not yet written.
    #[arg(long, env = "PDCHANNELS_MIRROR_MAX_WAIT", default_value = "10m", value_parser = parse_max_wait)]
    pub mirror_max_wait: std::time::Duration,

    /// How long a note being written is this process's: another mirror takes it over after
    /// this long if this one stops (benchmarks shorten it).
    #[arg(long, env = "PDCHANNELS_MIRROR_LEASE", default_value = "60s", value_parser = parse_lease, hide = true)]
    pub mirror_lease: std::time::Duration,
}

fn parse_time_zone(text: &str) -> Result<chrono_tz::Tz, String> {
    text.trim().parse().map_err(|_| {
        format!(
            "{text:?} is not an IANA time zone name; e.g. Europe/London, America/Sao_Paulo, UTC"
        )
    })
}

fn parse_calling_code(text: &str) -> Result<String, String> {
    let digits = text.trim().trim_start_matches('+');
    if (1..=3).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
        Ok(digits.to_owned())
    } else {
        Err(format!(
            "{text:?} is not a country calling code: 1 to 3 digits, e.g. 44 or +55"
        ))
    }
}

fn parse_quiet(text: &str) -> Result<std::time::Duration, String> {
    DurationRange {
        min: std::time::Duration::ZERO,
        max: std::time::Duration::from_secs(86_400),
        example: "2m",
    }
    .parse(text)
}

fn parse_max_wait(text: &str) -> Result<std::time::Duration, String> {
    DurationRange {
        min: std::time::Duration::ZERO,
        max: std::time::Duration::from_secs(86_400),
        example: "10m",
    }
    .parse(text)
}

fn parse_lease(text: &str) -> Result<std::time::Duration, String> {
    DurationRange {
        min: std::time::Duration::from_millis(100),
        max: std::time::Duration::from_secs(3600),
        example: "60s",
    }
    .parse(text)
}

impl MirrorRunArgs {
    /// A flag that only the mirror reads, if one was given (or set in the environment): for
    /// `serve` to say it is not used without `--mirror`.
    pub fn given_flag(&self) -> Option<&'static str> {
        [
            (
                self.pipedrive_url.is_some(),
                "--pipedrive-url (PDCHANNELS_PIPEDRIVE_URL)",
            ),
            (
                self.pipedrive_oauth,
                "--pipedrive-oauth (PDCHANNELS_PIPEDRIVE_OAUTH)",
            ),
            (
                self.time_zone.is_some(),
                "--time-zone (PDCHANNELS_TIME_ZONE)",
            ),
            (
                self.calling_code.is_some(),
                "--calling-code (PDCHANNELS_CALLING_CODE)",
            ),
        ]
        .into_iter()
        .find_map(|(given, flag)| given.then_some(flag))
    }
}

fn parse_lead_id(text: &str) -> Result<String, String> {
    pdchannels_store::MirrorTarget::lead_id(text).ok_or_else(|| {
        format!(
            "a lead's id is a UUID such as adf21080-0e10-11eb-879b-05d71fb426ec (the end of the lead's address in Pipedrive), got {text:?}"
        )
    })
}
