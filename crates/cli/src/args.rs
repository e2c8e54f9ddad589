//! The command line: every flag, its environment variable, and its help text.

use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use pdchannels_store::OutboxState;
use secrecy::SecretString;

use crate::duration_flag::DurationRange;

mod mirror;
pub use mirror::{MirrorCommand, MirrorCommandArgs, MirrorRunArgs};

/// Put incoming messages into conversations over Pipedrive's Channels API contract.
///
/// pdchannels stores channels, conversations and messages in an embedded SQLite database and
/// offers them to AI agents as MCP tools. Pipedrive deprecated its Channels API on 2026-02-01;
/// pdchannels keeps the contract alive and self-hostable.
///
/// Start here:
///   pdchannels serve        (the hub: Channels API + MCP over HTTP on 127.0.0.1:8787)
///   pdchannels channels create --id wa-main --name "WhatsApp"
///   pdchannels receive --channel-id wa-main --conversation-id c1 --sender-id s1 --id m1 --message "Hi"
///   pdchannels mcp          (an MCP server on stdio, for Claude Desktop, Cursor, the Inspector)
#[derive(Debug, Parser)]
#[command(
    name = "pdchannels",
    version,
    verbatim_doc_comment,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// The help heading of the flags every command takes: listed after a command's own options,
/// which are what a reader of `pdchannels CMD --help` looks for first.
const GLOBAL: &str = "Global options";

/// The command line as clap sees it, adjusted where derive cannot: the `auth` commands do not use
/// the database, so their help does not offer `--db` (it is still accepted, being global).
pub fn command() -> clap::Command {
    let command = Cli::command();
    let db = command
        .get_arguments()
        .find(|arg| arg.get_id() == "db")
        .cloned()
        .expect("Global declares --db");
    // A subcommand that declares a global itself does not get the top-level copy, and passes
    // its own (hidden) one down to its subcommands.
    command.mut_subcommand("auth", |auth| auth.arg(db.hide(true)))
}

/// Flags every command takes.
/// Parses `--db` without repeating it: clap's own error would print the value as given, a
/// password in a `postgres://` URL included. Our error says what is wrong and never shows it.
#[derive(Clone)]
struct DatabaseParser;

impl clap::builder::TypedValueParser for DatabaseParser {
    type Value = pdchannels_store::Database;

    fn parse_ref(
        &self,
        command: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Self::Value, clap::Error> {
        use clap::error::ErrorKind;
        let refuse =
            |kind, why: String| clap::Error::raw(kind, format!("{why}\n")).with_cmd(command);
        let text = value
            .to_str()
            .ok_or_else(|| refuse(ErrorKind::InvalidUtf8, "--db is not valid UTF-8".to_owned()))?;
        pdchannels_store::Database::parse(text)
            .map_err(|e| refuse(ErrorKind::ValueValidation, e.to_string()))
    }
}

#[derive(Debug, Args)]
pub struct Global {
    /// The database: a SQLite file (created on first use, with its directory), or a
    /// postgres://USER@HOST:PORT/DB URL for a PostgreSQL database several hubs share (keep its
    /// password out of the command line: PGPASSWORD, ~/.pgpass, or this variable).
    /// Default: DATABASE_URL if set, else channels.db in the user's data directory (see
    /// `pdchannels paths`).
    #[arg(
        long,
        global = true,
        env = "PDCHANNELS_DB",
        value_name = "PATH|URL",
        hide_env_values = true,
        value_parser = DatabaseParser,
        help_heading = GLOBAL
    )]
    pub db: Option<pdchannels_store::Database>,

    /// Log filter for stderr, e.g. `info` or `pdchannels_store=debug`.
    #[arg(
        long,
        global = true,
        env = "PDCHANNELS_LOG",
        default_value = "warn",
        value_name = "FILTER",
        help_heading = GLOBAL
    )]
    pub log: String,

    /// Log line format on stderr.
    #[arg(
        long,
        global = true,
        env = "PDCHANNELS_LOG_FORMAT",
        default_value = "text",
        help_heading = GLOBAL
    )]
    pub log_format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the hub: the Channels API (Pipedrive-compatible) and MCP over HTTP, on this machine.
    ///
    /// Serves POST /v1/channels, POST /v1/channels/messages/receive, DELETE /v1/channels/{id},
    /// DELETE /v1/channels/{channel-id}/conversations/{conversation-id} (also under /api/v1), a
    /// read API (GET /v1/channels, .../conversations, .../conversations/{id}), MCP at /mcp,
    /// /healthz and /metrics. Every route but /healthz needs an API token; the first start
    /// creates one and prints it once.
    Serve(ServeArgs),

    /// Manage the hub's API tokens.
    #[command(subcommand)]
    Token(TokenCommand),

    /// Run the MCP server on stdin/stdout (for Claude Desktop, Cursor, the MCP Inspector).
    ///
    /// Tools: channels_receive_message, channels_create, channels_delete,
    /// channels_delete_conversation. stdout carries only MCP frames; logs go to stderr.
    /// With --upstream (or --oauth), the tools deliver to that Channels API through the outbox.
    Mcp(UpstreamArgs),

    /// Deliver the outbox to --upstream (or the --oauth login's api_domain) until stopped.
    ///
    /// `serve --upstream` and `mcp --upstream` run the same relay while they run; this runs it
    /// alone, e.g. to drain what `receive` or `import` queued.
    Relay(UpstreamArgs),

    /// Inspect and repair the relay's outbox.
    #[command(subcommand)]
    Outbox(OutboxCommand),

    /// Import many messages: NDJSON, one receive payload a line (`-` for stdin).
    ///
    /// Every line is validated like a receive; rejects are reported with their line number,
    /// field path and reason, and the exit code is 1 if any line was rejected. Importing the
    /// same file again is safe (receive is an upsert by id), so an interrupted import is simply
    /// run again.
    Import(ImportArgs),

    /// Add one incoming message to a conversation, from flags or from JSON.
    ///
    /// Prints the API's response body (`{"success":true,"data":{...}}`) on stdout, or the error
    /// body with every problem; exits 1 if the message was not stored.
    ///
    /// Examples:
    ///   pdchannels receive --channel-id wa-main --conversation-id c1 --sender-id s1 --id m1 --message "Hi"
    ///   pdchannels receive --json message.json
    ///   echo '{"id":"m1",...}' | pdchannels receive --json -
    #[command(verbatim_doc_comment)]
    Receive(ReceiveArgs),

    /// Add, update or delete channels.
    #[command(subcommand)]
    Channels(ChannelsCommand),

    /// Delete conversations.
    #[command(subcommand)]
    Conversations(ConversationsCommand),

    /// Move a hub's database: copy a SQLite hub into PostgreSQL.
    #[command(subcommand)]
    Db(DbCommand),

    /// Provider apps: the apps the hub calls back through their messaging manifest, as
    /// Pipedrive did (sync conversations, learn participants, send replies).
    #[command(subcommand)]
    App(AppCommand),

    /// The web inbox (`serve` answers it at /inbox).
    #[command(subcommand)]
    Inbox(InboxCommand),

    /// Write every conversation into Pipedrive as notes on its person and deal or lead (run
    /// alone here, or inside the hub with `serve --mirror`), and link, list and watch it.
    ///
    /// One note per conversation per local day, rewritten after quiet spells, never twice,
    /// never over a person's edit, within a share of the company's daily token budget.
    ///
    /// Example:
    ///   PDCHANNELS_PIPEDRIVE_TOKEN=... pdchannels mirror --pipedrive-url https://acme.pipedrive.com --time-zone Europe/London
    #[command(verbatim_doc_comment)]
    Mirror(MirrorCommandArgs),

    /// Send a reply into a conversation, through the channel's provider app (its postMessage).
    ///
    /// Prints `{"success":true,"data":{"id",...}}` on stdout: `id` is the app's id for the
    /// message. A reply the app did not take is kept as failed and its local id printed; send
    /// it again with --retry LOCAL_ID (never again on its own: the app may have sent it).
    ///
    /// Example:
    ///   pdchannels send --channel-id wa-main --conversation-id c1 --message "On our way"
    #[command(verbatim_doc_comment)]
    Send(SendArgs),

    /// Log in to Pipedrive (or any server of the same OAuth contract) for --oauth.
    #[command(subcommand)]
    Auth(AuthCommand),

    /// Show where pdchannels keeps its data.
    Paths(OAuthFileArgs),

    /// Print a shell completion script on stdout.
    ///
    /// Examples:
    ///   pdchannels completions bash > ~/.local/share/bash-completion/completions/pdchannels
    ///   pdchannels completions zsh > ~/.zfunc/_pdchannels     (with fpath+=~/.zfunc)
    ///   pdchannels completions fish > ~/.config/fish/completions/pdchannels.fish
    #[command(verbatim_doc_comment)]
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },

    /// Print the manual page (roff) on stdout, or write every page to a directory.
    ///
    /// Example: pdchannels man --dir ~/.local/share/man/man1 && man pdchannels-serve
    Man {
        /// Write pdchannels.1 and one page per command (pdchannels-serve.1, ...), which the
        /// main page's SUBCOMMANDS section refers to, into this directory.
        #[arg(long, value_name = "DIR")]
        dir: Option<std::path::PathBuf>,
    },
}

/// Where `auth login` keeps the OAuth app credentials and tokens.
#[derive(Debug, Clone, Args)]
pub struct OAuthFileArgs {
    /// The OAuth token file (owner-only, 0600). Default: oauth.json in the user's config
    /// directory (see `pdchannels paths`).
    #[arg(long, env = "PDCHANNELS_OAUTH_FILE", value_name = "PATH")]
    pub oauth_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Run Pipedrive's OAuth authorization-code flow and save the tokens.
    ///
    /// Prints a URL to open in a browser; after "Allow and install", the browser is sent back to
    /// --redirect-uri on this machine, pdchannels exchanges the code at the token endpoint (Basic
    /// client auth) and saves the tokens in --oauth-file, readable by you only. Then pass
    /// --oauth to mcp, serve, relay, receive, import or channels: calls go to the login's
    /// api_domain (/api/v1), and the access token is refreshed before it expires.
    ///
    /// Example:
    ///   PDCHANNELS_CLIENT_SECRET=... pdchannels auth login --client-id 5a1c...
    #[command(verbatim_doc_comment)]
    Login(LoginArgs),
    /// Show the saved login: api_domain, scope, when the access token expires (never a token).
    Status(OAuthFileArgs),
    /// Refresh the access token now (it is also refreshed on its own before it expires).
    Refresh(OAuthFileArgs),
    /// Forget the saved tokens.
    Logout {
        #[command(flatten)]
        file: OAuthFileArgs,
        /// Also revoke the refresh token at the authorization server. For Pipedrive this
        /// uninstalls the app from the company.
        #[arg(long)]
        revoke: bool,
    },
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    #[command(flatten)]
    pub file: OAuthFileArgs,

    /// The app's client_id (Developer Hub, "OAuth & access scopes").
    #[arg(long, env = "PDCHANNELS_CLIENT_ID")]
    pub client_id: String,

    /// The app's client_secret. Prefer the environment variable or --client-secret-file: a
    /// flag shows in `ps` to every user of this machine (and earns a warning).
    #[arg(long, env = "PDCHANNELS_CLIENT_SECRET", hide_env_values = true, value_parser = parse_secret)]
    pub client_secret: Option<SecretString>,

    /// A file holding the app's client_secret (on one line; keep the file owner-only).
    #[arg(long, env = "PDCHANNELS_CLIENT_SECRET_FILE", value_name = "PATH")]
    pub client_secret_file: Option<PathBuf>,

    /// Where the browser comes back: the app's Callback URL, on this machine (http on
    /// 127.0.0.1, localhost or [::1]). Port 0 picks a free port: only for authorization servers
    /// that accept any redirect (Pipedrive wants the registered Callback URL exactly).
    #[arg(
        long,
        env = "PDCHANNELS_REDIRECT_URI",
        default_value = "http://127.0.0.1:8788/callback"
    )]
    pub redirect_uri: String,

    /// The authorization endpoint.
    #[arg(long, env = "PDCHANNELS_OAUTH_AUTHORIZE_URL", default_value = pdchannels_client::oauth::PIPEDRIVE_AUTHORIZE_URL)]
    pub authorize_url: String,

    /// The token endpoint.
    #[arg(long, env = "PDCHANNELS_OAUTH_TOKEN_URL", default_value = pdchannels_client::oauth::PIPEDRIVE_TOKEN_URL)]
    pub token_url: String,

    /// The revocation endpoint (used by `auth logout --revoke`).
    #[arg(long, env = "PDCHANNELS_OAUTH_REVOKE_URL", default_value = pdchannels_client::oauth::PIPEDRIVE_REVOKE_URL)]
    pub revoke_url: String,

    /// How long to wait for the browser to come back (Pipedrive's codes live 5 minutes).
    #[arg(long, default_value = "5m", value_parser = parse_login_wait)]
    pub wait: std::time::Duration,
}

/// Where to deliver instead of the local store.
#[derive(Debug, Clone, Args)]
pub struct UpstreamArgs {
    /// Deliver to this remote Channels API through the durable outbox instead of storing here,
    /// e.g. https://COMPANY.pipedrive.com/api/v1 or another hub's http://127.0.0.1:8787/v1.
    #[arg(long, env = "PDCHANNELS_UPSTREAM", value_name = "URL")]
    pub upstream: Option<String>,

    /// The upstream's API token (sent as x-api-token). Prefer the environment variable or
    /// --upstream-token-file: a flag shows in `ps` to every user of this machine (and earns a
    /// warning).
    #[arg(
        long,
        env = "PDCHANNELS_UPSTREAM_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true,
        value_parser = parse_secret
    )]
    pub upstream_token: Option<SecretString>,

    /// A file holding the upstream's API token (on one line; keep the file owner-only).
    #[arg(long, env = "PDCHANNELS_UPSTREAM_TOKEN_FILE", value_name = "PATH")]
    pub upstream_token_file: Option<PathBuf>,

    /// Use the login saved by `pdchannels auth login` (OAuth, refreshed as needed) instead of
    /// an API token; the upstream defaults to its api_domain + /api/v1.
    #[arg(
        long,
        env = "PDCHANNELS_UPSTREAM_OAUTH",
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub oauth: bool,

    #[command(flatten)]
    pub oauth_file: OAuthFileArgs,

    /// How long a call waits for the upstream's answer before answering "queued" (it stays in
    /// the outbox and is delivered later), e.g. 10s, 500ms.
    #[arg(long, env = "PDCHANNELS_DELIVER_TIMEOUT", default_value = "10s", value_parser = parse_deliver_timeout)]
    pub deliver_timeout: std::time::Duration,

    /// A call whose sends failed this many times is given up on (dead, with the reason in
    /// `outbox list --state dead`). Default: no count limit, only --give-up-after.
    #[arg(long, env = "PDCHANNELS_MAX_ATTEMPTS", value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_attempts: Option<u32>,

    /// A call still failing this long after its first failure is given up on (dead), e.g. 24h,
    /// 90m; `0` never gives up.
    #[arg(long, env = "PDCHANNELS_GIVE_UP_AFTER", value_name = "DURATION", default_value = "24h", value_parser = parse_give_up_after)]
    pub give_up_after: std::time::Duration,
}

/// Secrets are kept as `SecretString` from the moment they are parsed, so that no `Debug` of the
/// command line shows them.
pub(crate) fn parse_secret(text: &str) -> Result<SecretString, String> {
    Ok(SecretString::from(text.to_owned()))
}

fn parse_count(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!(
            "expected a whole number of at least 1, got {text:?}"
        )),
    }
}

/// A connection or session timeout: zero would close everything at once; a day is far past any
/// sensible wait.
fn parse_timeout(text: &str) -> Result<std::time::Duration, String> {
    DurationRange {
        min: std::time::Duration::from_millis(1),
        max: std::time::Duration::from_secs(86_400),
        example: "10s",
    }
    .parse(text)
}

/// `auth login --wait`: Pipedrive's authorization codes live 5 minutes; an hour is plenty.
fn parse_login_wait(text: &str) -> Result<std::time::Duration, String> {
    DurationRange {
        min: std::time::Duration::from_secs(1),
        max: std::time::Duration::from_secs(3600),
        example: "5m",
    }
    .parse(text)
}

/// `token create --name`: shown in lists and logs, so printable and short.
fn parse_token_name(text: &str) -> Result<String, String> {
    let name = text.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(
            "1 to 100 characters without control characters (it is shown in `token list`), e.g. --name zapier"
                .to_owned(),
        );
    }
    Ok(name.to_owned())
}

/// `--listen`: an IP address and a port, with what to pass when it is not.
fn parse_listen(text: &str) -> Result<std::net::SocketAddr, String> {
    text.trim().parse().map_err(|_| {
        "an IP address and a port: e.g. --listen 127.0.0.1:8787 (this machine only), \
         0.0.0.0:8787 (every interface) or [::1]:8787; a host name such as localhost is not \
         taken"
            .to_owned()
    })
}

/// `--allowed-host`: a name as the Host header carries it (`hub.example.com`, or with a port),
/// never a URL: a value that could never match is refused instead of silently ignored.
fn parse_allowed_host(text: &str) -> Result<String, String> {
    let host = text.trim();
    if host.is_empty() || host.contains("://") || host.contains('/') || host.contains(' ') {
        let example = host
            .split("://")
            .last()
            .unwrap_or(host)
            .split('/')
            .next()
            .unwrap_or_default();
        return Err(format!(
            "a host name as the Host header carries it, not a URL: e.g. --allowed-host {}",
            if example.is_empty() {
                "hub.example.com"
            } else {
                example
            }
        ));
    }
    Ok(host.to_owned())
}

/// `--mcp-allowed-origin`: an origin as browsers send it, `scheme://host[:port]` (`:*` for any
/// port), never a bare host or a URL with a path.
fn parse_allowed_origin(text: &str) -> Result<String, String> {
    let origin = text.trim().trim_end_matches('/');
    let Some((scheme, rest)) = origin.split_once("://") else {
        return Err(format!(
            "an origin as browsers send it, with its scheme: e.g. --mcp-allowed-origin https://{origin}"
        ));
    };
    if !matches!(scheme, "http" | "https") || rest.is_empty() || rest.contains('/') {
        return Err(
            "an origin is scheme://host[:port] (http or https, no path), e.g. https://app.example.com or http://localhost:*"
                .to_owned(),
        );
    }
    Ok(origin.to_owned())
}

/// `--deliver-timeout`: 0s answers "queued" at once; no HTTP or MCP client waits 10 minutes.
fn parse_deliver_timeout(text: &str) -> Result<std::time::Duration, String> {
    DurationRange {
        min: std::time::Duration::ZERO,
        max: std::time::Duration::from_secs(600),
        example: "10s",
    }
    .parse(text)
}

/// `--give-up-after`: 0 means never; a year is past any outage worth waiting out.
fn parse_give_up_after(text: &str) -> Result<std::time::Duration, String> {
    DurationRange {
        min: std::time::Duration::ZERO,
        max: std::time::Duration::from_secs(365 * 86_400),
        example: "24h",
    }
    .parse(text)
}

#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// List outbox calls, oldest first: a table, or with --json one JSON object per line.
    List {
        /// Only calls in this state.
        #[arg(long, value_enum)]
        state: Option<OutboxStateArg>,
        /// At most this many.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..))]
        limit: i64,
        #[command(flatten)]
        output: ListOutput,
    },
    /// Show one call as JSON: its request, attempts, last error and the upstream's answer.
    Show {
        /// The outbox id.
        id: i64,
    },
    /// Put a dead call (or a waiting one) back in line, due now; or, with --all, every one.
    ///
    /// Examples:
    ///   pdchannels outbox retry 42
    ///   pdchannels outbox retry --all                (every dead and waiting call)
    ///   pdchannels outbox retry --all --state dead   (only the dead ones)
    #[command(
        verbatim_doc_comment,
        group(clap::ArgGroup::new("which").args(["id", "all"]).required(true))
    )]
    Retry {
        /// The outbox id.
        id: Option<i64>,
        /// Every dead call and every call waiting out a backoff (not those being sent now).
        #[arg(long, conflicts_with = "id")]
        all: bool,
        /// With --all: only the dead calls, or only the waiting ones.
        #[arg(long, value_enum, requires = "all", conflicts_with = "id")]
        state: Option<RetryStateArg>,
    },
    /// Remove a call from the outbox for good.
    Drop {
        /// The outbox id.
        id: i64,
    },
    /// Calls per state, the oldest pending call, the next attempt.
    Stats {
        #[command(flatten)]
        output: ListOutput,
    },
}

/// How a list command prints: a table for people, or JSON for scripts.
#[derive(Debug, Clone, Copy, Args)]
pub struct ListOutput {
    /// Print JSON instead of a table: one object per line (per row), with stable field names
    /// and RFC 3339 times.
    #[arg(long)]
    pub json: bool,
}

/// Which calls `outbox retry --all --state` puts back in line (delivered calls never go again).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RetryStateArg {
    /// Calls rejected for good (or given up on).
    Dead,
    /// Calls waiting out a backoff after a failure (or a rate limit).
    Pending,
}

impl From<RetryStateArg> for OutboxState {
    fn from(state: RetryStateArg) -> Self {
        match state {
            RetryStateArg::Dead => OutboxState::Dead,
            RetryStateArg::Pending => OutboxState::Pending,
        }
    }
}

/// An outbox call's state, as `--state` takes it (the store's [`OutboxState`], which knows no
/// clap).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutboxStateArg {
    /// Waiting to be delivered (or being sent, or waiting out a backoff).
    Pending,
    /// The upstream accepted it.
    Delivered,
    /// Rejected for good; kept until retried or dropped.
    Dead,
}

impl From<OutboxStateArg> for OutboxState {
    fn from(state: OutboxStateArg) -> Self {
        match state {
            OutboxStateArg::Pending => OutboxState::Pending,
            OutboxStateArg::Delivered => OutboxState::Delivered,
            OutboxStateArg::Dead => OutboxState::Dead,
        }
    }
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The NDJSON file, or `-` for stdin.
    pub file: PathBuf,
    #[command(flatten)]
    pub upstream: UpstreamArgs,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub upstream: UpstreamArgs,

    /// Address to listen on. The default is loopback only.
    #[arg(long, env = "PDCHANNELS_LISTEN", default_value = pdchannels_hub::DEFAULT_LISTEN, value_parser = parse_listen)]
    pub listen: std::net::SocketAddr,

    /// The company the hub plays towards provider apps: its id (an integer), answered as
    /// `pd_company_id` and by `GET /v1/users/me`.
    #[arg(
        long,
        env = "PDCHANNELS_COMPANY_ID",
        default_value_t = 1,
        help_heading = "Provider apps"
    )]
    pub company_id: i64,

    /// The company's name, answered by `GET /v1/users/me`.
    #[arg(
        long,
        env = "PDCHANNELS_COMPANY_NAME",
        default_value = "pdchannels",
        help_heading = "Provider apps"
    )]
    pub company_name: String,

    /// The company's domain, answered by `GET /v1/users/me` (Pipedrive's `{domain}.pipedrive.com`).
    #[arg(
        long,
        env = "PDCHANNELS_COMPANY_DOMAIN",
        default_value = "pdchannels",
        help_heading = "Provider apps"
    )]
    pub company_domain: String,

    /// Limit each token to N requests per 2-second window, like Pipedrive (e.g. `80/2s`).
    /// Off by default.
    #[arg(long, env = "PDCHANNELS_RATE_LIMIT", value_name = "N/2s", value_parser = pdchannels_hub::RateLimits::parse_burst)]
    pub rate_limit: Option<u32>,

    /// A daily budget per token in Pipedrive's token costs (receive 10, add channel 10,
    /// deletes 6), reset at midnight UTC. Off by default.
    #[arg(long, env = "PDCHANNELS_DAILY_BUDGET", value_name = "TOKENS")]
    pub daily_budget: Option<u64>,

    /// Another host name /mcp accepts in the Host header (loopback names always are).
    /// Repeatable; needed behind a proxy or a real DNS name.
    #[arg(long = "allowed-host", value_name = "HOST", value_parser = parse_allowed_host)]
    pub allowed_hosts: Vec<String>,

    /// A browser origin allowed to use /mcp (e.g. https://app.example.com, or
    /// http://localhost:* for any port), besides the hub's own and https:// on each
    /// --allowed-host. Repeatable; every other Origin is refused.
    #[arg(long = "mcp-allowed-origin", value_name = "ORIGIN", value_parser = parse_allowed_origin)]
    pub mcp_allowed_origins: Vec<String>,

    /// Most MCP sessions open over HTTP at once, in all; past it `initialize` gets a 503.
    #[arg(long, env = "PDCHANNELS_MAX_MCP_SESSIONS", value_name = "N", default_value_t = pdchannels_hub::McpSessionLimits::default().max_total, value_parser = parse_count)]
    pub max_mcp_sessions: usize,

    /// Most MCP sessions open at once per API token; past it `initialize` gets a 429.
    #[arg(long, env = "PDCHANNELS_MAX_MCP_SESSIONS_PER_TOKEN", value_name = "N", default_value_t = pdchannels_hub::McpSessionLimits::default().max_per_token, value_parser = parse_count)]
    pub max_mcp_sessions_per_token: usize,

    /// An MCP session without a message for this long is closed (its client starts a new one).
    #[arg(long, env = "PDCHANNELS_MCP_IDLE_TIMEOUT", value_name = "DURATION", default_value = "15m", value_parser = parse_timeout)]
    pub mcp_idle_timeout: std::time::Duration,

    #[command(flatten)]
    pub bounds: ServeBounds,

    /// Also run the notes mirror inside the hub: every conversation is written into Pipedrive
    /// as notes (see `pdchannels mirror --help`; its flags are under "Notes mirror").
    #[arg(
        long,
        env = "PDCHANNELS_MIRROR",
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::BoolishValueParser::new(),
        help_heading = "Notes mirror"
    )]
    pub mirror: bool,

    #[command(flatten)]
    pub mirror_run: MirrorRunArgs,
}

/// What one client may hold of the hub: body size, connections, and how long it may take.
#[derive(Debug, Args)]
pub struct ServeBounds {
    /// The largest request body (Channels API and /mcp), in bytes; larger ones get a 413.
    #[arg(long, env = "PDCHANNELS_MAX_BODY_BYTES", value_name = "BYTES", default_value = "1048576", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_body_bytes: u32,

    /// Open connections at most. At the cap a new client takes the place of the connection
    /// idle the longest; if all are answering requests it gets a 503. Keep it well under the
    /// process's descriptor limit (`ulimit -n`).
    #[arg(long, env = "PDCHANNELS_MAX_CONNECTIONS", value_name = "N", default_value = "512", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// How long a client may take to send a request's headers, from their first byte.
    #[arg(long, env = "PDCHANNELS_HEADER_TIMEOUT", value_name = "DURATION", default_value = "10s", value_parser = parse_timeout)]
    pub header_timeout: std::time::Duration,

    /// How long a client may take to send a request's body, after its headers; then a 408.
    #[arg(long, env = "PDCHANNELS_BODY_TIMEOUT", value_name = "DURATION", default_value = "30s", value_parser = parse_timeout)]
    pub body_timeout: std::time::Duration,

    /// How long a connection may wait for its next request before it is closed (an MCP
    /// stream that is streaming is not waiting).
    #[arg(long, env = "PDCHANNELS_IDLE_TIMEOUT", value_name = "DURATION", default_value = "60s", value_parser = parse_timeout)]
    pub idle_timeout: std::time::Duration,
}

impl ServeBounds {
    pub fn connection_limits(&self) -> pdchannels_hub::ConnectionLimits {
        pdchannels_hub::ConnectionLimits {
            max_connections: self.max_connections as usize,
            header_timeout: self.header_timeout,
            body_timeout: self.body_timeout,
            idle_timeout: self.idle_timeout,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Copy a SQLite hub (channels, conversations, messages, tokens, outbox) into an empty
    /// PostgreSQL database, ids kept; then point the hubs at it with --db postgres://...
    ///
    /// Stop the hub first: what it writes during the copy is not copied. The copy's rows are
    /// counted on both sides at the end; any difference is an error. An interrupted copy is
    /// continued with --resume. Prints a JSON summary on stdout.
    ///
    /// Example:
    ///   PGPASSWORD=... pdchannels db copy --from ~/.local/share/pdchannels/channels.db \
    ///       --to postgres://pdchannels@db.internal:5432/pdchannels
    #[command(verbatim_doc_comment)]
    Copy(DbCopyArgs),
}

#[derive(Debug, Args)]
pub struct DbCopyArgs {
    /// The SQLite database to copy: a path, or sqlite:PATH.
    #[arg(long, value_name = "PATH")]
    pub from: String,

    /// The PostgreSQL database to copy into (it must exist, and be empty):
    /// postgres://USER@HOST:PORT/DB. Keep its password out of the command line: PGPASSWORD or
    /// ~/.pgpass.
    #[arg(long, value_name = "URL")]
    pub to: String,

    /// Continue an interrupted copy of the same --from into this --to (or check a finished one)
    /// instead of refusing a target that is not empty.
    #[arg(long)]
    pub resume: bool,
}

#[derive(Debug, Args)]
pub struct SendArgs {
    /// The channel's provider_channel_id.
    #[arg(long)]
    pub channel_id: String,
    /// The conversation's id.
    #[arg(long)]
    pub conversation_id: String,
    /// The text to send.
    #[arg(long, required_unless_present = "retry")]
    pub message: Option<String>,
    /// The template the text was written from (allowed after the conversation's reply_by).
    #[arg(long)]
    pub template_id: Option<String>,
    /// Send again the failed reply with this local id (from the failure's message).
    #[arg(long, value_name = "LOCAL_ID", conflicts_with = "message")]
    pub retry: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum InboxCommand {
    /// Print a one-time login link to the inbox, acting as an API token: it works once, within
    /// 10 minutes (the browser then holds a session cookie, never the token).
    Link {
        /// The token's id (`pdchannels token list` shows them).
        #[arg(long)]
        token_id: String,
        /// Where the hub is reached, for the link.
        #[arg(long, default_value = "http://127.0.0.1:8787")]
        hub_url: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AppCommand {
    /// Add a provider app: its messaging manifest, and the client id and secret the hub sends
    /// (Basic auth) on every call to it.
    ///
    /// The client secret comes from PDCHANNELS_APP_CLIENT_SECRET or --client-secret-file, never
    /// from a flag (every user of the machine can read flags with ps).
    ///
    /// Example:
    ///   PDCHANNELS_APP_CLIENT_SECRET=... pdchannels app add whatsapp \
    ///       --manifest https://app.example.com/manifest.json --client-id 57da5c3c55a82bb4
    #[command(verbatim_doc_comment)]
    Add {
        /// The app's name in the hub (letters, digits, `-`, `_`, `.`; up to 64).
        #[arg(value_parser = parse_app_name)]
        name: String,
        /// The manifest: a JSON file, or an http(s) URL it is fetched from.
        #[arg(long, value_name = "FILE|URL")]
        manifest: String,
        /// The app's OAuth client id (the Basic-auth user of every callback).
        #[arg(long)]
        client_id: String,
        /// A file holding the client secret, on one line (keep it owner-only).
        #[arg(long, value_name = "PATH")]
        client_secret_file: Option<PathBuf>,
        /// Pages of conversations (30 each) a new channel's first sync reads.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
        backfill_pages: u32,
        /// Replace the app of that name (new manifest and credentials; its channels stay).
        #[arg(long)]
        replace: bool,
    },
    /// List the apps.
    List {
        #[command(flatten)]
        output: ListOutput,
    },
    /// Show an app: its manifest, channels and state (never its secret), as JSON.
    Show {
        /// The app's name.
        name: String,
    },
    /// The calls the hub makes to apps (syncs, conversation details), newest first, with the
    /// app's last answer: what to look at when a channel's conversations do not appear.
    Calls {
        /// Only the calls in this state.
        #[arg(long, value_enum)]
        state: Option<CallStateArg>,
        /// Show at most this many (the newest).
        #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(i64).range(1..=1_000_000))]
        limit: i64,
        #[command(flatten)]
        output: ListOutput,
    },
    /// Put a dead call back in line (after fixing what the app refused).
    Retry {
        /// The call's id (from `app calls`).
        id: i64,
    },
    /// Remove an app. Its channels and tokens stay, belonging to no app.
    Remove {
        /// The app's name.
        name: String,
    },
}

/// Which calls to apps `app calls --state` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CallStateArg {
    /// Waiting for their time, or being made.
    Pending,
    /// Answered and applied.
    Done,
    /// Given up on: refused by the app, or failed too often.
    Dead,
}

impl CallStateArg {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Done => "done",
            Self::Dead => "dead",
        }
    }
}

/// An app's name: shown in tables and typed in commands.
fn parse_app_name(text: &str) -> Result<String, String> {
    let ok = !text.is_empty()
        && text.len() <= 64
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(text.to_owned())
    } else {
        Err("1 to 64 letters, digits, `-`, `_` or `.`, e.g. whatsapp".to_owned())
    }
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API token and print it (it is shown only this once).
    Create {
        /// What the token is for (1 to 100 characters, no control characters).
        #[arg(long, default_value = "default", value_parser = parse_token_name)]
        name: String,
        /// The provider app the token is for (`pdchannels app add`): channels it creates
        /// belong to that app, which the hub then calls back.
        #[arg(long, value_name = "APP")]
        app: Option<String>,
    },
    /// List tokens (their ids and names; never the tokens themselves).
    List {
        #[command(flatten)]
        output: ListOutput,
    },
    /// Revoke a token by its id (from `token list`); it stops working within 2 seconds.
    Revoke {
        /// The token's id, e.g. tok_3f9a1c2e.
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct ReceiveArgs {
    #[command(flatten)]
    pub upstream: UpstreamArgs,

    /// Read the whole payload as JSON from FILE (`-` for stdin) instead of flags.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["id", "channel_id", "sender_id", "conversation_id", "message", "status", "created_at", "reply_by", "conversation_link", "attachment"])]
    pub json: Option<PathBuf>,

    /// The message id; receiving the same id again updates the message.
    #[arg(long, required_unless_present = "json")]
    pub id: Option<String>,
    /// The channel's provider_channel_id.
    #[arg(long, required_unless_present = "json")]
    pub channel_id: Option<String>,
    /// The sender's id.
    #[arg(long, required_unless_present = "json")]
    pub sender_id: Option<String>,
    /// The conversation's id.
    #[arg(long, required_unless_present = "json")]
    pub conversation_id: Option<String>,
    /// The message text.
    #[arg(long, required_unless_present = "json")]
    pub message: Option<String>,
    /// sent, delivered, read or failed.
    #[arg(long, default_value = "sent")]
    pub status: String,
    /// When the message was created (RFC 3339, or YYYY-MM-DD HH:MM in UTC). Default: now.
    #[arg(long)]
    pub created_at: Option<String>,
    /// When replies stop being possible.
    #[arg(long)]
    pub reply_by: Option<String>,
    /// A URL that opens the conversation at the provider.
    #[arg(long)]
    pub conversation_link: Option<String>,
    /// An attachment as JSON, e.g. '{"id":"a1","type":"image/png","url":"https://..."}'. Repeatable.
    #[arg(long, value_name = "JSON")]
    pub attachment: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum ChannelsCommand {
    /// Make a channel belong to a provider app (the hub calls that app back for it).
    Link {
        /// The channel's provider_channel_id.
        channel: String,
        /// The app's name (`pdchannels app list`).
        app: String,
    },
    /// Make a channel belong to no app.
    Unlink {
        /// The channel's provider_channel_id.
        channel: String,
    },
    /// Add a channel, or update the one with the same id.
    Create {
        #[command(flatten)]
        upstream: UpstreamArgs,
        /// The channel's provider_channel_id: your id for it, used by every later call.
        #[arg(long)]
        id: String,
        /// The channel's name.
        #[arg(long)]
        name: String,
        /// An icon URL.
        #[arg(long)]
        avatar_url: Option<String>,
        /// The channel supports message templates (WhatsApp only).
        #[arg(long)]
        template_support: bool,
        /// facebook, whatsapp or other.
        #[arg(long, default_value = "other")]
        provider_type: String,
    },
    /// Delete a channel with all its conversations and messages.
    Delete {
        #[command(flatten)]
        upstream: UpstreamArgs,
        /// The channel's provider_channel_id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConversationsCommand {
    /// Delete one conversation of a channel, with its messages.
    Delete {
        #[command(flatten)]
        upstream: UpstreamArgs,
        /// The channel's provider_channel_id.
        #[arg(long)]
        channel_id: String,
        /// The conversation's id.
        conversation_id: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_on_the_command_line_never_show_in_debug_output() {
        let cli = Cli::try_parse_from([
            "pdchannels",
            "auth",
            "login",
            "--client-id",
            "app",
            "--client-secret",
            "client-secret-value",
        ])
        .unwrap();
        assert!(!format!("{cli:?}").contains("client-secret-value"));
        let cli = Cli::try_parse_from([
            "pdchannels",
            "relay",
            "--upstream",
            "http://127.0.0.1:1/v1",
            "--upstream-token",
            "upstream-token-value",
        ])
        .unwrap();
        assert!(!format!("{cli:?}").contains("upstream-token-value"));
    }

    #[test]
    fn serve_bounds_default_to_the_hubs_defaults() {
        let Command::Serve(args) = Cli::try_parse_from(["pdchannels", "serve"])
            .unwrap()
            .command
        else {
            panic!("serve parses as serve");
        };
        assert_eq!(
            args.bounds.connection_limits(),
            pdchannels_hub::ConnectionLimits::default()
        );
        assert_eq!(
            args.bounds.max_body_bytes as usize,
            pdchannels_model::Limits::default().max_body_bytes
        );
    }

    #[test]
    fn zero_and_overlong_timeouts_are_refused() {
        for bad in ["0s", "0", "99999999999999999999999s"] {
            let parsed = Cli::try_parse_from(["pdchannels", "serve", "--idle-timeout", bad]);
            assert!(parsed.is_err(), "{bad} is refused");
        }
    }
}
