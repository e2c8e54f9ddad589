//! A typed async client for exactly the Pipedrive endpoints the mirror uses (research §6.8), all
//! supported, none deprecated: v2 persons search and get, v2 deals, v1 leads, v1 notes add, get,
//! list and update.
//!
//! Two things matter more than the types:
//! - **Outcomes.** An error says whether the call surely did nothing ([`Outcome::NotApplied`]:
//!   refused before sending, or answered 4xx/429) or may have done it ([`Outcome::Unknown`]: a
//!   timeout, a connection broken after sending, a 5xx, a 2xx that cannot be read). After an
//!   unknown outcome of `POST /v1/notes` the caller must look for the note's marker
//!   ([`PipedriveClient::find_note_by_marker`]) before posting again: Pipedrive has no idempotency
//!   key.
//! - **Pacing.** Every answer's `x-ratelimit-*` and `x-daily-*` headers update a [`Pacing`]
//!   state: a spent burst window is waited out before the next request (up to [`MAX_WAIT`]),
//!   a spent daily budget is answered at once without sending.
//!
//! Credentials are the relay's ([`Credentials`]): an API token (`x-api-token`), a Bearer token,
//! or an OAuth session (refreshed once after a 401). No token is ever in a `Debug`, an error or
//! a log line; errors name the endpoint, never the URL (a search URL holds a customer's phone
//! number).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use pdchannels_client::Credentials;
use reqwest::header::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::budget::Call;
use crate::marker::Marker;
use crate::matching::{Candidate, SearchQuery};

/// The longest the client waits for a burst window before answering [`Error::RateLimited`].
pub const MAX_WAIT: Duration = Duration::from_secs(10);

/// The burst window (research §5.1).
const WINDOW: Duration = Duration::from_secs(2);

/// Whether a failed call may have taken effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It surely did nothing: retrying cannot duplicate anything.
    NotApplied,
    /// It may have: a write must be reconciled before it is sent again.
    Unknown,
}

/// What went wrong with a call. Names the endpoint, never the URL or a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Pipedrive refused it (4xx other than 401/404/429): it did nothing.
    #[error("Pipedrive refused {endpoint}: HTTP {status}: {message}")]
    Refused {
        /// The call.
        endpoint: &'static str,
        /// The status.
        status: u16,
        /// Pipedrive's `error`, or the status' reason.
        message: String,
    },
    /// The record is not there (404).
    #[error("{endpoint}: not found in Pipedrive")]
    NotFound {
        /// The call.
        endpoint: &'static str,
    },
    /// The credentials were refused (401, after one OAuth refresh).
    #[error("Pipedrive refused the credentials for {endpoint} (HTTP 401)")]
    Unauthorized {
        /// The call.
        endpoint: &'static str,
    },
    /// The burst window is spent: try again after `retry_in`.
    #[error("{endpoint}: Pipedrive's rate limit is reached; try again in {retry_in:?}")]
    RateLimited {
        /// The call.
        endpoint: &'static str,
        /// How long to wait.
        retry_in: Duration,
    },
    /// The company's daily token budget is spent: no call until Pipedrive's midnight.
    #[error("{endpoint}: the company's daily Pipedrive token budget is spent")]
    BudgetExhausted {
        /// The call.
        endpoint: &'static str,
    },
    /// The connection could not be made: nothing was sent.
    #[error("{endpoint}: cannot reach Pipedrive: {message}")]
    Connect {
        /// The call.
        endpoint: &'static str,
        /// Why.
        message: String,
    },
    /// Sent, but no answer came (a timeout, or the connection broke): it may have taken effect.
    #[error("{endpoint}: no answer from Pipedrive ({message}); the call may have taken effect")]
    Lost {
        /// The call.
        endpoint: &'static str,
        /// Why.
        message: String,
    },
    /// A 403 that is an HTML page, not Pipedrive's JSON: an API token that kept going after
    /// 429s is blocked by Cloudflare (research §5.1). Stop and tell a person; retrying makes it
    /// worse.
    #[error(
        "{endpoint}: Pipedrive's edge blocked the requests (HTTP 403, an HTML page); stop and check the token's traffic"
    )]
    Blocked {
        /// The call.
        endpoint: &'static str,
    },
    /// Pipedrive failed (5xx): it may have taken effect.
    #[error("{endpoint}: Pipedrive failed with HTTP {status}; the call may have taken effect")]
    Server {
        /// The call.
        endpoint: &'static str,
        /// The status.
        status: u16,
    },
    /// A 2xx whose body is not what the contract says: it took effect, but we cannot tell how.
    #[error("{endpoint}: cannot read Pipedrive's answer: {message}")]
    Decode {
        /// The call.
        endpoint: &'static str,
        /// Why.
        message: String,
    },
}

impl Error {
    /// Whether the call may have taken effect.
    pub fn outcome(&self) -> Outcome {
        match self {
            Self::Lost { .. } | Self::Server { .. } | Self::Decode { .. } => Outcome::Unknown,
            _ => Outcome::NotApplied,
        }
    }

    /// Whether Pipedrive refused a person search for its term (400, 422): other searches may
    /// well succeed. Not a 404: a search never legitimately answers one, so it says the base
    /// URL is wrong for every call.
    pub fn refuses_the_search_term(&self) -> bool {
        matches!(
            self,
            Self::Refused {
                endpoint: "persons_search",
                status: 400 | 422,
                ..
            }
        )
    }
}

/// What the answers so far say about the limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PacingSnapshot {
    /// `x-ratelimit-limit` (requests per 2 s) of the last answer.
    pub burst_limit: Option<u32>,
    /// `x-ratelimit-remaining` of the last answer.
    pub burst_remaining: Option<u32>,
    /// `x-daily-ratelimit-token-limit`, when sent.
    pub daily_token_limit: Option<u64>,
    /// `x-daily-ratelimit-token-remaining`, when sent.
    pub daily_tokens_remaining: Option<u64>,
    /// `x-daily-requests-left` (POST/PUT with an API token), when sent.
    pub daily_requests_left: Option<u64>,
    /// The daily budget was answered 429: stopped until [`Pacing::reset_day`].
    pub budget_exhausted: bool,
}

/// The pacing state shared by every request of one client.
#[derive(Debug, Default)]
pub struct Pacing {
    state: Mutex<PacingState>,
}

#[derive(Debug, Default)]
struct PacingState {
    snapshot: PacingSnapshot,
    /// No request before this (a spent window, general or search).
    general_until: Option<Instant>,
    search_until: Option<Instant>,
    /// Calls that may have cost tokens since [`Pacing::take_charged`] last took them.
    charged: Vec<Call>,
}

fn header<T: std::str::FromStr>(headers: &HeaderMap, name: &str) -> Option<T> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

impl Pacing {
    fn lock(&self) -> std::sync::MutexGuard<'_, PacingState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What the answers so far said.
    pub fn snapshot(&self) -> PacingSnapshot {
        self.lock().snapshot
    }

    /// The calls that may have cost tokens since the last time they were taken: every answer
    /// but a 429, and every request sent whose answer was lost. The mirror's ledger counts them.
    pub fn take_charged(&self) -> Vec<Call> {
        std::mem::take(&mut self.lock().charged)
    }

    fn charge(&self, call: Call) {
        self.lock().charged.push(call);
    }

    /// Pipedrive's midnight: the daily budget is open again.
    pub fn reset_day(&self) {
        let mut state = self.lock();
        state.snapshot.budget_exhausted = false;
        state.snapshot.daily_tokens_remaining = None;
        state.snapshot.daily_requests_left = None;
    }

    /// How long `call` must wait, or why it must not go at all.
    fn before(&self, call: Call) -> Result<Option<Duration>, Error> {
        let state = self.lock();
        if state.snapshot.budget_exhausted {
            return Err(Error::BudgetExhausted {
                endpoint: call.name(),
            });
        }
        let until = if call == Call::PersonsSearch {
            // The search has its own window, and the general one counts it too.
            state.search_until.max(state.general_until)
        } else {
            state.general_until
        };
        let now = Instant::now();
        Ok(until.filter(|u| *u > now).map(|u| u - now))
    }

    /// Learns from an answer.
    fn observe(&self, call: Call, status: u16, headers: &HeaderMap) {
        let mut state = self.lock();
        if status != 429 {
            state.charged.push(call);
        }
        let s = &mut state.snapshot;
        let limit = header::<u32>(headers, "x-ratelimit-limit");
        let remaining = header::<u32>(headers, "x-ratelimit-remaining");
        // The search's own window (10 per 2 s) is not the token's: keep the general figures.
        if call != Call::PersonsSearch {
            s.burst_limit = limit.or(s.burst_limit);
            s.burst_remaining = remaining.or(s.burst_remaining);
        }
        s.daily_token_limit =
            header(headers, "x-daily-ratelimit-token-limit").or(s.daily_token_limit);
        // Undocumented and sometimes missing (research §5.2): a missing one keeps the last value.
        s.daily_tokens_remaining =
            header(headers, "x-daily-ratelimit-token-remaining").or(s.daily_tokens_remaining);
        s.daily_requests_left = header(headers, "x-daily-requests-left").or(s.daily_requests_left);
        if budget_spent(status, headers) {
            s.budget_exhausted = true;
            return;
        }
        if remaining == Some(0) || status == 429 {
            // Reset in seconds (research §7 q6: unverified; an old example shows 2). Bounded:
            // a window resets within seconds, anything longer is a misread header.
            let reset = header::<u64>(headers, "x-ratelimit-reset")
                .map_or(WINDOW, Duration::from_secs)
                .min(Duration::from_secs(60));
            let until = Some(Instant::now() + reset);
            if call == Call::PersonsSearch {
                state.search_until = state.search_until.max(until);
            } else {
                state.general_until = state.general_until.max(until);
            }
        }
    }
}

/// A 429 for the daily budget, not the burst window (research §5.2): the budget header says 0,
/// or the window still had room.
fn budget_spent(status: u16, headers: &HeaderMap) -> bool {
    status == 429
        && (header::<u64>(headers, "x-daily-ratelimit-token-remaining") == Some(0)
            || header::<u32>(headers, "x-ratelimit-remaining").is_some_and(|r| r > 0))
}

/// A person found by the search.
pub type SearchHit = Candidate;

/// A person (`GET /api/v2/persons/{id}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// Its id.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// Its organization.
    pub org_id: Option<i64>,
    /// Its phone numbers.
    pub phones: Vec<String>,
    /// Its e-mail addresses.
    pub emails: Vec<String>,
}

/// A deal (`GET /api/v2/deals`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Deal {
    /// Its id.
    pub id: i64,
    /// Its title.
    #[serde(default)]
    pub title: String,
    /// `open`, `won`, `lost`.
    #[serde(default)]
    pub status: String,
    /// Its organization.
    #[serde(default)]
    pub org_id: Option<i64>,
}

/// A lead (`GET /v1/leads`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Lead {
    /// Its id (a UUID).
    pub id: String,
    /// Its title.
    #[serde(default)]
    pub title: String,
    /// Archived leads cannot be edited (research §2.3).
    #[serde(default)]
    pub is_archived: bool,
}

/// A note as Pipedrive returns it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Note {
    /// Its id.
    pub id: i64,
    /// Its HTML, after Pipedrive's sanitiser.
    #[serde(default)]
    pub content: String,
    /// Linked person.
    #[serde(default)]
    pub person_id: Option<i64>,
    /// Linked deal.
    #[serde(default)]
    pub deal_id: Option<i64>,
    /// Linked lead.
    #[serde(default)]
    pub lead_id: Option<String>,
    /// Linked organization.
    #[serde(default)]
    pub org_id: Option<i64>,
    /// `YYYY-MM-DD HH:MM:SS`, UTC.
    #[serde(default)]
    pub add_time: String,
    /// `YYYY-MM-DD HH:MM:SS`, UTC: with [`Self::last_update_user_id`], how an edit by someone
    /// else is told (never by comparing content: the sanitiser rewrites it).
    #[serde(default)]
    pub update_time: String,
    /// The author.
    #[serde(default)]
    pub user_id: Option<i64>,
    /// Who changed it last.
    #[serde(default)]
    pub last_update_user_id: Option<i64>,
}

/// Where a note goes: a person, and a deal or a lead (research §6.4 sends the person as well as
/// the deal: whether a deal-only note shows on the person is not documented).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NoteLinks {
    /// `person_id`.
    pub person_id: Option<i64>,
    /// `deal_id`.
    pub deal_id: Option<i64>,
    /// `lead_id`.
    pub lead_id: Option<String>,
    /// `org_id`.
    pub org_id: Option<i64>,
}

impl NoteLinks {
    fn write(&self, body: &mut serde_json::Map<String, Value>) {
        if let Some(id) = self.person_id {
            body.insert("person_id".into(), json!(id));
        }
        if let Some(id) = self.deal_id {
            body.insert("deal_id".into(), json!(id));
        }
        if let Some(id) = &self.lead_id {
            body.insert("lead_id".into(), json!(id));
        }
        if let Some(id) = self.org_id {
            body.insert("org_id".into(), json!(id));
        }
    }
}

/// `POST /v1/notes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNote {
    /// The HTML.
    pub content: String,
    /// Where it goes (at least one).
    pub links: NoteLinks,
    /// Its time in the timeline (the first message's, UTC `YYYY-MM-DD HH:MM:SS`); may be
    /// refused to non-admins (research §7 q1): then send it again without.
    pub add_time: Option<String>,
}

/// `GET /v1/notes` filters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NoteFilter {
    /// `person_id`.
    pub person_id: Option<i64>,
    /// `deal_id`.
    pub deal_id: Option<i64>,
    /// `lead_id`.
    pub lead_id: Option<String>,
    /// `start_date` (`YYYY-MM-DD`, by `add_time`).
    pub start_date: Option<String>,
    /// `end_date` (`YYYY-MM-DD`).
    pub end_date: Option<String>,
    /// `sort`, e.g. `add_time DESC`.
    pub sort: Option<String>,
    /// `start`.
    pub start: u64,
    /// `limit` (Pipedrive's default 100 when 0).
    pub limit: u64,
}

/// The most pages [`PipedriveClient::find_note_by_marker`] reads.
pub const MAX_RECONCILE_PAGES: u64 = 4;

impl NoteFilter {
    /// The notes of `person_id` whose `add_time` can hold a segment of local `day`: the mirror
    /// posts `add_time` as the first message's UTC time, and a local day spans two UTC dates
    /// (three, for the farthest time zones), so one day either side.
    pub fn for_segment(person_id: i64, day: chrono::NaiveDate) -> Self {
        let date = |d: Option<chrono::NaiveDate>| d.map(|d| d.format("%Y-%m-%d").to_string());
        Self {
            person_id: Some(person_id),
            start_date: date(day.pred_opt()),
            end_date: date(day.succ_opt()),
            ..Self::default()
        }
    }
}

/// One page of notes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotePage {
    /// The notes.
    pub notes: Vec<Note>,
    /// `start` of the next page, if there is one.
    pub next_start: Option<u64>,
}

/// Builds a [`PipedriveClient`].
#[derive(Debug)]
pub struct ClientBuilder {
    base_url: String,
    credentials: Credentials,
    timeout: Duration,
}

impl ClientBuilder {
    /// How long one request may take (default 15 s: a note PUT carries up to 60 KB).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Checks the base URL and builds the client.
    pub fn build(self) -> Result<PipedriveClient, String> {
        let base = self.base_url.trim_end_matches('/');
        let url = url::Url::parse(base)
            .map_err(|e| format!("the Pipedrive URL must be absolute ({e}), got {base:?}"))?;
        if !matches!(url.scheme(), "http" | "https")
            || url.query().is_some()
            || !url.username().is_empty()
            || url.password().is_some()
        {
            // Never echo it: a URL with `?api_token=` holds the token.
            return Err(
                "the Pipedrive URL must be the company domain alone, e.g. https://COMPANY.pipedrive.com, \
                 with no query or user:password (give the token by the environment)"
                    .to_owned(),
            );
        }
        let http = reqwest::Client::builder()
            // Never follow a redirect: it would carry the token to another host.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(self.timeout)
            .user_agent(concat!("pdchannels-mirror/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(PipedriveClient {
            http,
            base: base.into(),
            credentials: self.credentials,
            pacing: Arc::default(),
            trouble: Arc::default(),
        })
    }
}

/// A client for one Pipedrive company.
#[derive(Clone)]
pub struct PipedriveClient {
    http: reqwest::Client,
    base: Arc<str>,
    credentials: Credentials,
    pacing: Arc<Pacing>,
    /// See [`PipedriveClient::trouble`].
    trouble: Arc<std::sync::Mutex<Option<String>>>,
}

impl std::fmt::Debug for PipedriveClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Credentials' own Debug already redacts; spelled out so a change there cannot leak here.
        f.debug_struct("PipedriveClient")
            .field("base", &self.base)
            .field("credentials", &"[REDACTED]")
            .field("pacing", &self.pacing.snapshot())
            .finish_non_exhaustive()
    }
}

/// A request as data, before auth.
struct Request<'a> {
    call: Call,
    method: reqwest::Method,
    path: String,
    query: Vec<(&'static str, String)>,
    body: Option<&'a Value>,
}

impl PipedriveClient {
    /// A client for the company at `base_url` (`https://COMPANY.pipedrive.com`, or an OAuth
    /// token's `api_domain`); v1 calls go to `/api/v1/...`, which both forms answer.
    pub fn builder(base_url: impl Into<String>, credentials: Credentials) -> ClientBuilder {
        ClientBuilder {
            base_url: base_url.into(),
            credentials,
            timeout: Duration::from_secs(15),
        }
    }

    /// The pacing state (for the budget and `mirror status`).
    pub fn pacing(&self) -> &Pacing {
        &self.pacing
    }

    /// `GET /api/v2/persons/search` with `query`, at most `limit` hits (1..=500).
    pub async fn search_persons(
        &self,
        query: &SearchQuery,
        limit: u32,
    ) -> Result<Vec<SearchHit>, Error> {
        #[derive(Deserialize)]
        struct Data {
            #[serde(default)]
            items: Vec<Item>,
        }
        #[derive(Deserialize)]
        struct Item {
            item: Hit,
        }
        #[derive(Deserialize)]
        struct Hit {
            id: i64,
            #[serde(default)]
            name: String,
            #[serde(default)]
            phones: Vec<String>,
            #[serde(default)]
            emails: Vec<String>,
            #[serde(default)]
            organization: Option<Org>,
        }
        #[derive(Deserialize)]
        struct Org {
            id: i64,
        }
        let data: Option<Data> = self
            .send(Request {
                call: Call::PersonsSearch,
                method: reqwest::Method::GET,
                path: "/api/v2/persons/search".to_owned(),
                query: vec![
                    ("term", query.term.clone()),
                    ("fields", query.field.to_owned()),
                    ("exact_match", query.exact_match.to_string()),
                    ("limit", limit.clamp(1, 500).to_string()),
                ],
                body: None,
            })
            .await?;
        Ok(data
            .map(|d| d.items)
            .unwrap_or_default()
            .into_iter()
            .map(|i| Candidate {
                person_id: i.item.id,
                name: i.item.name,
                org_id: i.item.organization.map(|o| o.id),
                phones: i.item.phones,
                emails: i.item.emails,
            })
            .collect())
    }

    /// `GET /api/v2/persons/{id}`; `None` if there is no such person.
    pub async fn person(&self, id: i64) -> Result<Option<Person>, Error> {
        #[derive(Deserialize)]
        struct Raw {
            id: i64,
            #[serde(default)]
            name: String,
            #[serde(default)]
            org_id: Option<i64>,
            #[serde(default)]
            phones: Vec<Labelled>,
            #[serde(default)]
            emails: Vec<Labelled>,
        }
        #[derive(Deserialize)]
        struct Labelled {
            value: String,
        }
        let raw: Result<Option<Raw>, Error> = self
            .send(Request {
                call: Call::PersonGet,
                method: reqwest::Method::GET,
                path: format!("/api/v2/persons/{id}"),
                query: Vec::new(),
                body: None,
            })
            .await;
        match raw {
            Err(Error::NotFound { .. }) | Ok(None) => Ok(None),
            Err(e) => Err(e),
            Ok(Some(raw)) => Ok(Some(Person {
                id: raw.id,
                name: raw.name,
                org_id: raw.org_id,
                phones: raw.phones.into_iter().map(|p| p.value).collect(),
                emails: raw.emails.into_iter().map(|e| e.value).collect(),
            })),
        }
    }

    /// `GET /api/v2/deals?person_id=&status=open`, most recently updated first, at most 2 (one
    /// is linked; a second says there was a choice).
    pub async fn open_deals(&self, person_id: i64) -> Result<Vec<Deal>, Error> {
        let deals: Option<Vec<Deal>> = self
            .send(Request {
                call: Call::Deals,
                method: reqwest::Method::GET,
                path: "/api/v2/deals".to_owned(),
                query: vec![
                    ("person_id", person_id.to_string()),
                    ("status", "open".to_owned()),
                    ("sort_by", "update_time".to_owned()),
                    ("sort_direction", "desc".to_owned()),
                    ("limit", "2".to_owned()),
                ],
                body: None,
            })
            .await?;
        Ok(deals.unwrap_or_default())
    }

    /// `GET /v1/leads?person_id=`, not archived, most recently updated first, at most 2.
    pub async fn leads(&self, person_id: i64) -> Result<Vec<Lead>, Error> {
        let leads: Option<Vec<Lead>> = self
            .send(Request {
                call: Call::Leads,
                method: reqwest::Method::GET,
                path: "/api/v1/leads".to_owned(),
                query: vec![
                    ("person_id", person_id.to_string()),
                    ("archived_status", "not_archived".to_owned()),
                    ("sort", "update_time DESC".to_owned()),
                    ("limit", "2".to_owned()),
                ],
                body: None,
            })
            .await?;
        Ok(leads.unwrap_or_default())
    }

    /// `POST /v1/notes`. On an error whose [`Error::outcome`] is unknown the note may exist:
    /// reconcile with [`Self::find_note_by_marker`] before posting again.
    pub async fn add_note(&self, note: &NewNote) -> Result<Note, Error> {
        let mut body = serde_json::Map::new();
        body.insert("content".into(), json!(note.content));
        note.links.write(&mut body);
        if let Some(add_time) = &note.add_time {
            body.insert("add_time".into(), json!(add_time));
        }
        let body = Value::Object(body);
        let created: Option<Note> = self
            .send(Request {
                call: Call::NoteAdd,
                method: reqwest::Method::POST,
                path: "/api/v1/notes".to_owned(),
                query: Vec::new(),
                body: Some(&body),
            })
            .await?;
        created.ok_or(Error::Decode {
            endpoint: Call::NoteAdd.name(),
            message: "a 2xx answer without the note".to_owned(),
        })
    }

    /// `GET /v1/notes/{id}`; `None` if it is gone (deleted by a person).
    pub async fn note(&self, id: i64) -> Result<Option<Note>, Error> {
        let note: Result<Option<Note>, Error> = self
            .send(Request {
                call: Call::NoteGet,
                method: reqwest::Method::GET,
                path: format!("/api/v1/notes/{id}"),
                query: Vec::new(),
                body: None,
            })
            .await;
        match note {
            Err(Error::NotFound { .. }) => Ok(None),
            other => other,
        }
    }

    /// `GET /v1/notes` with `filter`.
    pub async fn list_notes(&self, filter: &NoteFilter) -> Result<NotePage, Error> {
        let mut query: Vec<(&'static str, String)> = Vec::new();
        if let Some(id) = filter.person_id {
            query.push(("person_id", id.to_string()));
        }
        if let Some(id) = filter.deal_id {
            query.push(("deal_id", id.to_string()));
        }
        if let Some(id) = &filter.lead_id {
            query.push(("lead_id", id.clone()));
        }
        if let Some(date) = &filter.start_date {
            query.push(("start_date", date.clone()));
        }
        if let Some(date) = &filter.end_date {
            query.push(("end_date", date.clone()));
        }
        if let Some(sort) = &filter.sort {
            query.push(("sort", sort.clone()));
        }
        query.push(("start", filter.start.to_string()));
        if filter.limit > 0 {
            query.push(("limit", filter.limit.to_string()));
        }
        let (notes, additional): (Option<Vec<Note>>, Value) = self
            .send_with_additional(Request {
                call: Call::NotesList,
                method: reqwest::Method::GET,
                path: "/api/v1/notes".to_owned(),
                query,
                body: None,
            })
            .await?;
        let pagination = &additional["pagination"];
        let next_start = if pagination["more_items_in_collection"].as_bool() == Some(true) {
            pagination["next_start"].as_u64()
        } else {
            None
        };
        Ok(NotePage {
            // v1 lists are known to answer `data: null` when empty.
            notes: notes.unwrap_or_default(),
            next_start,
        })
    }

    /// `PUT /v1/notes/{id}` with the whole new content (and links, if given). The PUT carries
    /// everything, so sending it again after an unknown outcome gives the same note.
    pub async fn update_note(
        &self,
        id: i64,
        content: &str,
        links: Option<&NoteLinks>,
    ) -> Result<Note, Error> {
        let mut body = serde_json::Map::new();
        body.insert("content".into(), json!(content));
        if let Some(links) = links {
            links.write(&mut body);
        }
        let body = Value::Object(body);
        let note: Option<Note> = self
            .send(Request {
                call: Call::NoteUpdate,
                method: reqwest::Method::PUT,
                path: format!("/api/v1/notes/{id}"),
                query: Vec::new(),
                body: Some(&body),
            })
            .await?;
        note.ok_or(Error::Decode {
            endpoint: Call::NoteUpdate.name(),
            message: "a 2xx answer without the note".to_owned(),
        })
    }

    /// The note of `marker` among the notes of `filter` (the mirror's own notes for one person
    /// and one day, research §6.4: see [`NoteFilter::for_segment`]); `None` if it is not there.
    /// Pages of 50, newest first, at most [`MAX_RECONCILE_PAGES`] of them (20 tokens each): a
    /// note missed for want of paging would be posted twice, so one page is not enough for a
    /// busy person; past that bound it answers [`Error::Refused`] rather than "not there".
    pub async fn find_note_by_marker(
        &self,
        filter: &NoteFilter,
        marker: &Marker,
    ) -> Result<Option<Note>, Error> {
        let mut filter = filter.clone();
        filter
            .sort
            .get_or_insert_with(|| "add_time DESC".to_owned());
        if filter.limit == 0 {
            filter.limit = 50;
        }
        for _ in 0..MAX_RECONCILE_PAGES {
            let page = self.list_notes(&filter).await?;
            // Lowest id if a race ever made two: the caller keeps one and reports the other.
            let found = page
                .notes
                .into_iter()
                .filter(|n| marker.is_in(&n.content))
                .min_by_key(|n| n.id);
            match (found, page.next_start) {
                (Some(note), _) => return Ok(Some(note)),
                (None, None) => return Ok(None),
                (None, Some(next)) => filter.start = next,
            }
        }
        Err(Error::Refused {
            endpoint: Call::NotesList.name(),
            status: 0,
            message: format!(
                "more than {} notes to look through for one marker; link the note by hand",
                MAX_RECONCILE_PAGES * 50
            ),
        })
    }

    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        request: Request<'_>,
    ) -> Result<Option<T>, Error> {
        self.send_with_additional(request)
            .await
            .map(|(data, _)| data)
    }

    /// [`Self::exchange`], noting whether every call fails for the same reason (see
    /// [`Self::trouble`]).
    async fn send_with_additional<T: serde::de::DeserializeOwned>(
        &self,
        request: Request<'_>,
    ) -> Result<(Option<T>, Value), Error> {
        let result = self.exchange(request).await;
        let trouble = match &result {
            Err(Error::Unauthorized { .. }) => Some(
                "Pipedrive refuses the credentials (HTTP 401): check PDCHANNELS_PIPEDRIVE_TOKEN or --pipedrive-token-file (Pipedrive: Personal preferences > API), or run `pdchannels auth login` again for --pipedrive-oauth".to_owned(),
            ),
            Err(e @ Error::Blocked { .. }) => Some(e.to_string()),
            Err(Error::Connect { message, .. }) => Some(format!(
                "cannot reach Pipedrive at {}: {message}; check --pipedrive-url and the network",
                self.base
            )),
            // A search never answers 404 but for a wrong address.
            Err(Error::NotFound {
                endpoint: "persons_search",
            }) => Some(format!(
                "Pipedrive at {} answered 404 for the person search: --pipedrive-url must be the company's address, https://COMPANY.pipedrive.com, with no path",
                self.base
            )),
            // Pipedrive answered (its JSON): the credentials and the way are good.
            Ok(_) | Err(Error::Refused { .. } | Error::NotFound { .. }) => None,
            // Not sent, held by the limits, or no answer of Pipedrive's own (a timeout, a 5xx,
            // a page that is not its JSON): says nothing either way.
            Err(_) => return result,
        };
        *self
            .trouble
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = trouble;
        result
    }

    /// Why every call fails, if the last one failed for a reason that is not its own: the
    /// credentials refused, Pipedrive's edge blocking, or no way to Pipedrive (what to fix, for
    /// `mirror status` and the log). Cleared by the next call Pipedrive answers.
    pub fn trouble(&self) -> Option<String> {
        self.trouble
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Paces, authenticates (refreshing an OAuth token once after a 401), sends, learns from
    /// the headers, and reads `data` and `additional_data` of the envelope.
    async fn exchange<T: serde::de::DeserializeOwned>(
        &self,
        request: Request<'_>,
    ) -> Result<(Option<T>, Value), Error> {
        let endpoint = request.call.name();
        let mut refreshed = false;
        loop {
            match self.pacing.before(request.call)? {
                Some(wait) if wait > MAX_WAIT => {
                    return Err(Error::RateLimited {
                        endpoint,
                        retry_in: wait,
                    });
                }
                Some(wait) => tokio::time::sleep(wait).await,
                None => {}
            }
            let token = self.token(endpoint).await?;
            let mut url =
                url::Url::parse(&format!("{}{}", self.base, request.path)).map_err(|e| {
                    Error::Connect {
                        endpoint,
                        message: format!("a bad URL: {e}"),
                    }
                })?;
            if !request.query.is_empty() {
                url.query_pairs_mut().extend_pairs(&request.query);
            }
            let mut builder = self.http.request(request.method.clone(), url);
            builder = match &self.credentials {
                Credentials::ApiToken(_) => builder.header("x-api-token", token.expose_secret()),
                _ => builder.bearer_auth(token.expose_secret()),
            };
            if let Some(body) = request.body {
                builder = builder.json(body);
            }
            let response = match builder.send().await {
                Ok(response) => response,
                Err(e) => {
                    let error = transport_error(endpoint, e);
                    if error.outcome() == Outcome::Unknown {
                        self.pacing.charge(request.call);
                    }
                    return Err(error);
                }
            };
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            self.pacing.observe(request.call, status, &headers);
            let body = match response.text().await {
                Ok(body) => body,
                Err(e) => {
                    // The status came, the body did not: for a write the work was done or not.
                    return Err(Error::Lost {
                        endpoint,
                        message: pdchannels_client::error_chain(&e.without_url()),
                    });
                }
            };
            if status == 401
                && !refreshed
                && let Credentials::OAuth(session) = &self.credentials
            {
                tracing::info!(
                    endpoint,
                    "Pipedrive answered 401; refreshing the OAuth token once"
                );
                refreshed = true;
                session
                    .refresh_now()
                    .await
                    .map_err(|_| Error::Unauthorized { endpoint })?;
                continue;
            }
            return answer(
                endpoint,
                status,
                &headers,
                &body,
                &self.pacing,
                request.call,
            );
        }
    }

    async fn token(&self, endpoint: &'static str) -> Result<SecretString, Error> {
        Ok(match &self.credentials {
            Credentials::ApiToken(token) | Credentials::Bearer(token) => token.clone(),
            Credentials::OAuth(session) => {
                // A token that expires soon is refreshed before it goes out.
                if session.tokens().expires_within(Duration::from_secs(60)) {
                    session
                        .refresh_now()
                        .await
                        .map_err(|_| Error::Unauthorized { endpoint })?;
                }
                session.tokens().access_token.clone()
            }
        })
    }
}

fn transport_error(endpoint: &'static str, e: reqwest::Error) -> Error {
    // A connect error (refused, DNS, TLS handshake) means nothing was sent. Anything after
    // connecting (a timeout, a reset, a closed connection) may follow a request Pipedrive read.
    let connect = e.is_connect();
    let message = pdchannels_client::error_chain(&e.without_url());
    if connect {
        Error::Connect { endpoint, message }
    } else {
        Error::Lost { endpoint, message }
    }
}

fn answer<T: serde::de::DeserializeOwned>(
    endpoint: &'static str,
    status: u16,
    headers: &HeaderMap,
    body: &str,
    pacing: &Pacing,
    call: Call,
) -> Result<(Option<T>, Value), Error> {
    #[derive(Deserialize)]
    struct Envelope<T> {
        #[serde(default)]
        success: Option<bool>,
        data: Option<T>,
        #[serde(default)]
        additional_data: Value,
    }
    match status {
        200..=299 => {
            let envelope: Envelope<T> = serde_json::from_str(body).map_err(|e| Error::Decode {
                endpoint,
                message: e.to_string(),
            })?;
            if envelope.success == Some(false) {
                return Err(Error::Decode {
                    endpoint,
                    message: "a 2xx answer with success: false".to_owned(),
                });
            }
            Ok((envelope.data, envelope.additional_data))
        }
        401 => Err(Error::Unauthorized { endpoint }),
        // Pipedrive's own 404 is its JSON envelope; an HTML page is a proxy's or an outage's, and
        // says nothing about the record: the call is tried again, never taken for "deleted".
        404 | 410 if body.trim_start().starts_with('{') => Err(Error::NotFound { endpoint }),
        404 | 410 => Err(Error::Server { endpoint, status }),
        429 if budget_spent(status, headers) => Err(Error::BudgetExhausted { endpoint }),
        429 => Err(Error::RateLimited {
            endpoint,
            retry_in: pacing.before(call).ok().flatten().unwrap_or(WINDOW),
        }),
        500..=599 => Err(Error::Server { endpoint, status }),
        403 if body.trim_start().starts_with('<') => Err(Error::Blocked { endpoint }),
        _ => {
            let envelope: Value = serde_json::from_str(body).unwrap_or(Value::Null);
            let message = envelope["error"].as_str().map_or_else(
                || {
                    reqwest::StatusCode::from_u16(status)
                        .ok()
                        .and_then(|s| s.canonical_reason())
                        .unwrap_or("error")
                        .to_owned()
                },
                |e| e.chars().take(300).collect(),
            );
            Err(Error::Refused {
                endpoint,
                status,
                message,
            })
        }
    }
}
