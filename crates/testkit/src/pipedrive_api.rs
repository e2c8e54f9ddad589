//! A Pipedrive API on 127.0.0.1 that keeps to the documented contract of the endpoints the notes
//! mirror uses, as far as the documentation goes (research: `notes-mirror.md` §1, §2, §5):
//!
//! - `GET /api/v2/persons/search` (20 tokens, its own burst limit of 10 per 2 s),
//!   `GET /api/v2/persons/{id}` (1), `GET /api/v2/deals` (10), `GET /v1/leads` (20);
//! - `POST /v1/notes` (10), `GET /v1/notes/{id}` (2), `GET /v1/notes` (20),
//!   `PUT /v1/notes/{id}` (10); the v1 paths answer under `/api/v1` too (the OAuth `api_domain`
//!   form);
//! - auth by `x-api-token` ([`API_TOKEN`]) or `Authorization: Bearer` ([`OAUTH_TOKEN`]), 401
//!   otherwise;
//! - `x-ratelimit-limit|remaining|reset` on every answer, with a 429 past the burst limit;
//!   the daily token budget as `x-daily-ratelimit-token-limit|remaining` (undocumented but sent)
//!   with a 429 once spent (until [`PipedriveApi::reset_day`]); `x-daily-requests-left` for
//!   POST/PUT with an API token (the 2019 fair-use limit, 10,000 a day);
//! - note content sanitised, and refused above 100,000 characters.
//!
//! Where the documentation is silent the fixture picks one reading and says so (see
//! [`sanitize`] and the search rules in `person_matches`); the mirror must not depend on more than
//! the documentation promises. A test can arm faults per endpoint ([`Fault`]), read what was spent
//! ([`PipedriveApi::tokens_spent`], [`PipedriveApi::notes_created`]) and edit a note as a person
//! in Pipedrive would ([`PipedriveApi::edit_note_as_person`]).
//!
//! ```no_run
//! # async fn demo() {
//! use pdchannels_testkit::pipedrive_api::{Fault, PipedriveApi, Route};
//! let api = PipedriveApi::start().await;
//! let ana = api.add_person("Ana Silva", &["+55 44 99999-9999"], &[]);
//! api.arm(Route::NotesAdd, Fault::LoseAnswer); // the next note is created, its answer lost
//! # }
//! ```

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

/// The API token the fixture accepts (`x-api-token`).
pub const API_TOKEN: &str = "pd-fixture-api-token";
/// The OAuth access token the fixture accepts (`Authorization: Bearer`).
pub const OAUTH_TOKEN: &str = "pd-fixture-oauth-access-token";
/// The Pipedrive user both tokens belong to: the author of the notes the mirror writes.
pub const TOKEN_USER_ID: i64 = 9001;
/// The user [`PipedriveApi::edit_note_as_person`] edits as.
pub const PERSON_USER_ID: i64 = 9002;
/// The documented maximum note size (research §1.7): about 100,000 characters.
pub const MAX_NOTE_CHARS: usize = 100_000;
/// Pipedrive's burst window.
pub const WINDOW: Duration = Duration::from_secs(2);
/// The Search API's own burst limit, on every plan (research §5.1).
pub const SEARCH_LIMIT: u32 = 10;

/// The endpoints the fixture serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// `GET /api/v2/persons/search`
    PersonsSearch,
    /// `GET /api/v2/persons/{id}`
    PersonGet,
    /// `GET /api/v2/deals`
    Deals,
    /// `GET /v1/leads`
    Leads,
    /// `POST /v1/notes`
    NotesAdd,
    /// `GET /v1/notes/{id}`
    NoteGet,
    /// `GET /v1/notes`
    NotesList,
    /// `PUT /v1/notes/{id}`
    NoteUpdate,
}

impl Route {
    /// Its `x-token-cost` (research §1.2, §2.1).
    pub fn cost(self) -> u64 {
        match self {
            Self::PersonsSearch | Self::Leads | Self::NotesList => 20,
            Self::PersonGet => 1,
            Self::Deals | Self::NotesAdd | Self::NoteUpdate => 10,
            Self::NoteGet => 2,
        }
    }

    fn is_search(self) -> bool {
        self == Self::PersonsSearch
    }

    fn is_write(self) -> bool {
        matches!(self, Self::NotesAdd | Self::NoteUpdate)
    }
}

/// What the fixture does to the next request on a route, armed by a test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer this status (an error page, as a proxy in front of Pipedrive would) without doing
    /// anything.
    Status(u16),
    /// Do the work, then hold the answer this long (longer than the client's timeout: a
    /// timeout after Pipedrive applied the call, the other way an answer is lost).
    Delay(Duration),
    /// Do the work (a note is created or updated), then break the connection with no answer.
    LoseAnswer,
    /// Answer 429 with `x-ratelimit-remaining: 0` and `x-ratelimit-reset: reset_seconds`, as when
    /// another client on the same token spent the window.
    TooManyRequests {
        /// The `x-ratelimit-reset` sent.
        reset_seconds: u64,
    },
}

/// A person as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// Its id.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// Its phone numbers, as typed by people (any format).
    pub phones: Vec<String>,
    /// Its e-mail addresses.
    pub emails: Vec<String>,
    /// Its organization.
    pub org_id: Option<i64>,
}

/// A note as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// Its id.
    pub id: i64,
    /// The HTML after sanitising.
    pub content: String,
    /// Linked person.
    pub person_id: Option<i64>,
    /// Linked deal.
    pub deal_id: Option<i64>,
    /// Linked lead.
    pub lead_id: Option<String>,
    /// Linked organization.
    pub org_id: Option<i64>,
    /// `YYYY-MM-DD HH:MM:SS`, UTC.
    pub add_time: String,
    /// `YYYY-MM-DD HH:MM:SS`, UTC.
    pub update_time: String,
    /// The author.
    pub user_id: i64,
    /// Who changed it last.
    pub last_update_user_id: i64,
}

#[derive(Debug, Clone)]
struct Deal {
    id: i64,
    title: String,
    person_id: i64,
    status: String,
    update_time: String,
}

#[derive(Debug, Clone)]
struct Lead {
    id: String,
    title: String,
    person_id: i64,
    archived: bool,
    update_time: String,
}

/// A fixed 2-second window of one token (Pipedrive's is rolling; fixed is stricter at its edges
/// and simpler to reason about in a test).
#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    used: u32,
}

impl Window {
    /// Counts one request if the window has room: its remaining count and the seconds to reset.
    fn take(&mut self, limit: u32, now: Instant) -> Result<(u32, u64), u64> {
        if now.duration_since(self.started) >= WINDOW {
            self.started = now;
            self.used = 0;
        }
        let reset = (WINDOW - now.duration_since(self.started))
            .as_secs_f64()
            .ceil()
            .max(1.0) as u64;
        if self.used >= limit {
            return Err(reset);
        }
        self.used += 1;
        Ok((limit - self.used, reset))
    }
}

#[derive(Debug)]
struct World {
    next_id: i64,
    persons: Vec<Person>,
    deals: Vec<Deal>,
    leads: Vec<Lead>,
    notes: Vec<Note>,
    notes_created: usize,
    faults: HashMap<Route, VecDeque<Fault>>,
    calls: HashMap<Route, usize>,
    spent: HashMap<Route, u64>,
    burst_limit: u32,
    windows: HashMap<(&'static str, bool), Window>,
    daily_token_limit: u64,
    daily_tokens_spent: u64,
    daily_write_limit: u64,
    daily_writes: u64,
    refuse_add_time: bool,
    /// Seconds added to the wall clock (so a test can make `update_time` move without waiting).
    clock_offset: i64,
    /// Every answer is held this long after the work is done (a distant Pipedrive).
    answer_latency: Option<Duration>,
}

/// The running fixture.
#[derive(Clone)]
pub struct PipedriveApi {
    /// `http://127.0.0.1:PORT`: the company domain (`/api/v2/...`, `/v1/...`, `/api/v1/...`).
    pub url: String,
    world: Arc<Mutex<World>>,
}

fn lock(world: &Mutex<World>) -> std::sync::MutexGuard<'_, World> {
    world.lock().unwrap_or_else(PoisonError::into_inner)
}

impl PipedriveApi {
    /// Starts on a free port with a Growth plan's limits: 40 requests per 2 s per token, 300,000
    /// tokens a day (5 seats), 10,000 POST/PUT a day per API token.
    pub async fn start() -> Self {
        let world = Arc::new(Mutex::new(World {
            next_id: 1,
            persons: Vec::new(),
            deals: Vec::new(),
            leads: Vec::new(),
            notes: Vec::new(),
            notes_created: 0,
            faults: HashMap::new(),
            calls: HashMap::new(),
            spent: HashMap::new(),
            burst_limit: 40,
            windows: HashMap::new(),
            daily_token_limit: 300_000,
            daily_tokens_spent: 0,
            daily_write_limit: 10_000,
            daily_writes: 0,
            refuse_add_time: false,
            clock_offset: 0,
            answer_latency: None,
        }));
        let v1 = Router::new()
            .route("/notes", get(notes_list).post(notes_add))
            .route("/notes/{id}", get(note_get).put(note_update))
            .route("/leads", get(leads_list));
        let router = Router::new()
            .route("/api/v2/persons/search", get(persons_search))
            .route("/api/v2/persons/{id}", get(person_get))
            .route("/api/v2/deals", get(deals_list))
            .nest("/v1", v1.clone())
            .nest("/api/v1", v1)
            .with_state(world.clone());
        let url = crate::loopback::serve_on_loopback(router).await;
        Self { url, world }
    }

    /// Adds a person; its id.
    pub fn add_person(&self, name: &str, phones: &[&str], emails: &[&str]) -> i64 {
        let mut w = lock(&self.world);
        let id = w.take_id();
        w.persons.push(Person {
            id,
            name: name.to_owned(),
            phones: phones.iter().map(|p| (*p).to_owned()).collect(),
            emails: emails.iter().map(|e| (*e).to_owned()).collect(),
            org_id: None,
        });
        id
    }

    /// Adds a deal of `person_id` in `status` (`open`, `won`, `lost`); its id.
    pub fn add_deal(&self, person_id: i64, title: &str, status: &str) -> i64 {
        let mut w = lock(&self.world);
        let id = w.take_id();
        let update_time = w.now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
        w.deals.push(Deal {
            id,
            title: title.to_owned(),
            person_id,
            status: status.to_owned(),
            update_time,
        });
        id
    }

    /// Adds a lead of `person_id`; its id (a UUID).
    pub fn add_lead(&self, person_id: i64, title: &str) -> String {
        let mut w = lock(&self.world);
        let n = w.take_id();
        let id = format!("{:08x}-0000-4000-8000-{n:012x}", n);
        let update_time = w.now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
        w.leads.push(Lead {
            id: id.clone(),
            title: title.to_owned(),
            person_id,
            archived: false,
            update_time,
        });
        id
    }

    /// Queues `fault` for the next request on `route` (after those already queued there).
    pub fn arm(&self, route: Route, fault: Fault) {
        lock(&self.world)
            .faults
            .entry(route)
            .or_default()
            .push_back(fault);
    }

    /// Sets the burst limit per token per 2 s (`x-ratelimit-limit`; search stays at 10).
    pub fn set_burst_limit(&self, limit: u32) {
        lock(&self.world).burst_limit = limit;
    }

    /// Holds every answer this long after its work is done (as a distant Pipedrive does): a
    /// process killed meanwhile made the call without learning its outcome.
    pub fn set_answer_latency(&self, latency: Duration) {
        lock(&self.world).answer_latency = Some(latency);
    }

    /// Sets the company's daily token budget.
    pub fn set_daily_token_limit(&self, tokens: u64) {
        lock(&self.world).daily_token_limit = tokens;
    }

    /// Spends `tokens` of today's budget, as other integrations of the company would.
    pub fn spend_elsewhere(&self, tokens: u64) {
        lock(&self.world).daily_tokens_spent += tokens;
    }

    /// Sets how many POST/PUT an API token may send a day (`x-daily-requests-left`).
    pub fn set_daily_write_limit(&self, writes: u64) {
        lock(&self.world).daily_write_limit = writes;
    }

    /// Server midnight: the daily budget and write count start again.
    pub fn reset_day(&self) {
        let mut w = lock(&self.world);
        w.daily_tokens_spent = 0;
        w.daily_writes = 0;
    }

    /// Answers 403 to a note carrying `add_time` (research §7 q1: it may be admin-only).
    pub fn refuse_add_time(&self, refuse: bool) {
        lock(&self.world).refuse_add_time = refuse;
    }

    /// Moves the fixture's clock (timestamps it writes) by `seconds`.
    pub fn advance_clock(&self, seconds: i64) {
        lock(&self.world).clock_offset += seconds;
    }

    /// How many notes `POST /v1/notes` created.
    pub fn notes_created(&self) -> usize {
        lock(&self.world).notes_created
    }

    /// Every note, in id order.
    pub fn notes(&self) -> Vec<Note> {
        lock(&self.world).notes.clone()
    }

    /// One note.
    pub fn note(&self, id: i64) -> Option<Note> {
        lock(&self.world).notes.iter().find(|n| n.id == id).cloned()
    }

    /// The tokens spent today on `route` (answered requests only: a 429 or an injected error
    /// costs nothing).
    pub fn tokens_spent_on(&self, route: Route) -> u64 {
        lock(&self.world).spent.get(&route).copied().unwrap_or(0)
    }

    /// The tokens spent on every route, as counted by this fixture (not [`Self::spend_elsewhere`]).
    pub fn tokens_spent(&self) -> u64 {
        lock(&self.world).spent.values().sum()
    }

    /// How many requests reached `route` (every one, whatever its answer).
    pub fn calls(&self, route: Route) -> usize {
        lock(&self.world).calls.get(&route).copied().unwrap_or(0)
    }

    /// A person edits note `id` in Pipedrive's web app: new content (sanitised), a later
    /// `update_time`, `last_update_user_id` = [`PERSON_USER_ID`].
    pub fn edit_note_as_person(&self, id: i64, content: &str) {
        let mut w = lock(&self.world);
        w.clock_offset += 1; // a later second than the mirror's own write
        let now = w.now_text();
        let note = w
            .notes
            .iter_mut()
            .find(|n| n.id == id)
            .expect("the note exists");
        note.content = sanitize(content);
        note.update_time = now;
        note.last_update_user_id = PERSON_USER_ID;
    }
}

impl World {
    fn take_id(&mut self) -> i64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now() + chrono::TimeDelta::seconds(self.clock_offset)
    }

    fn now_text(&self) -> String {
        self.now().format("%Y-%m-%d %H:%M:%S").to_string()
    }
}

/// Who a request authenticated as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Auth {
    ApiToken,
    OAuth,
}

fn authenticate(headers: &HeaderMap) -> Option<Auth> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if text("x-api-token") == Some(API_TOKEN) {
        return Some(Auth::ApiToken);
    }
    let bearer = text("authorization").and_then(|v| v.strip_prefix("Bearer "));
    (bearer == Some(OAUTH_TOKEN)).then_some(Auth::OAuth)
}

/// An answer given early, before the work (boxed: a `Response` is large).
struct Early(Box<Response>);

impl From<Response> for Early {
    fn from(response: Response) -> Self {
        Self(Box::new(response))
    }
}

impl Early {
    fn into_response(self) -> Response {
        *self.0
    }
}

fn early(status: StatusCode, error: &str) -> Early {
    failure(status, error).into()
}

fn failure(status: StatusCode, error: &str) -> Response {
    (
        status,
        Json(json!({"success": false, "error": error, "errorCode": status.as_u16(),
                    "error_info": "Please check developers.pipedrive.com for more information about Pipedrive API."})),
    )
        .into_response()
}

/// What a request passed the gate with: the headers its answer carries, and what to do after.
struct Passed {
    headers: Vec<(&'static str, String)>,
    lose_answer: bool,
    delay: Option<Duration>,
}

/// Auth, the daily budget, the burst window, then the armed fault: an early answer, or the
/// request may go on.
async fn gate(world: &Mutex<World>, route: Route, headers: &HeaderMap) -> Result<Passed, Early> {
    let auth = authenticate(headers);
    let (fault, passed) = {
        let mut w = lock(world);
        *w.calls.entry(route).or_default() += 1;
        let Some(auth) = auth else {
            return Err(early(StatusCode::UNAUTHORIZED, "unauthorized access"));
        };
        let mut out: Vec<(&'static str, String)> = Vec::new();
        let daily_remaining = w.daily_token_limit.saturating_sub(w.daily_tokens_spent);
        out.push((
            "x-daily-ratelimit-token-limit",
            w.daily_token_limit.to_string(),
        ));
        let limit = if route.is_search() {
            SEARCH_LIMIT
        } else {
            w.burst_limit
        };
        let now = Instant::now();
        let window = w
            .windows
            .entry((
                if auth == Auth::ApiToken {
                    "api"
                } else {
                    "oauth"
                },
                route.is_search(),
            ))
            .or_insert(Window {
                started: now,
                used: 0,
            });
        let taken = window.take(limit, now);
        out.push(("x-ratelimit-limit", limit.to_string()));
        if daily_remaining == 0 {
            // The budget is spent: every request gets 429 until the server's midnight (§5.1).
            // The burst window still has room, which is how a client tells the two apart.
            let (remaining, reset) = taken.unwrap_or((0, 1));
            out.push(("x-ratelimit-remaining", remaining.to_string()));
            out.push(("x-ratelimit-reset", reset.to_string()));
            out.push(("x-daily-ratelimit-token-remaining", "0".to_owned()));
            return Err(with_headers(
                failure(
                    StatusCode::TOO_MANY_REQUESTS,
                    "Daily API token budget exceeded",
                ),
                &out,
            )
            .into());
        }
        let (remaining, reset) = match taken {
            Ok(taken) => taken,
            Err(reset) => {
                out.push(("x-ratelimit-remaining", "0".to_owned()));
                out.push(("x-ratelimit-reset", reset.to_string()));
                out.push((
                    "x-daily-ratelimit-token-remaining",
                    daily_remaining.to_string(),
                ));
                return Err(with_headers(
                    failure(StatusCode::TOO_MANY_REQUESTS, "Request over limit"),
                    &out,
                )
                .into());
            }
        };
        out.push(("x-ratelimit-remaining", remaining.to_string()));
        out.push(("x-ratelimit-reset", reset.to_string()));
        let fault = w.faults.get_mut(&route).and_then(VecDeque::pop_front);
        if let Some(Fault::Status(_) | Fault::TooManyRequests { .. }) = fault {
            // Answered without work: it costs nothing.
        } else {
            let cost = route.cost();
            w.daily_tokens_spent += cost;
            *w.spent.entry(route).or_default() += cost;
            if route.is_write() && auth == Auth::ApiToken {
                w.daily_writes += 1;
            }
        }
        let remaining = w.daily_token_limit.saturating_sub(w.daily_tokens_spent);
        out.push(("x-daily-ratelimit-token-remaining", remaining.to_string()));
        if route.is_write() && auth == Auth::ApiToken {
            let left = w.daily_write_limit.saturating_sub(w.daily_writes);
            out.push(("x-daily-requests-left", left.to_string()));
        }
        (fault, out)
    };
    let latency = lock(world).answer_latency;
    match fault {
        None => Ok(Passed {
            headers: passed,
            lose_answer: false,
            delay: latency,
        }),
        Some(Fault::Status(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            Err((status, "<html><body>injected failure</body></html>")
                .into_response()
                .into())
        }
        Some(Fault::TooManyRequests { reset_seconds }) => {
            let mut out = passed;
            out.retain(|(name, _)| !name.starts_with("x-ratelimit-re"));
            out.push(("x-ratelimit-remaining", "0".to_owned()));
            out.push(("x-ratelimit-reset", reset_seconds.to_string()));
            Err(with_headers(
                failure(StatusCode::TOO_MANY_REQUESTS, "Request over limit"),
                &out,
            )
            .into())
        }
        Some(Fault::Delay(delay)) => Ok(Passed {
            headers: passed,
            lose_answer: false,
            delay: Some(delay),
        }),
        Some(Fault::LoseAnswer) => Ok(Passed {
            headers: passed,
            lose_answer: true,
            delay: None,
        }),
    }
}

fn with_headers(mut response: Response, headers: &[(&'static str, String)]) -> Response {
    for (name, value) in headers {
        if let Ok(value) = HeaderValue::from_str(value) {
            response.headers_mut().insert(*name, value);
        }
    }
    response
}

/// The answer to a request that passed the gate (or a broken connection for a lost answer),
/// after the armed delay.
async fn finish(passed: &Passed, response: Response) -> Response {
    if let Some(delay) = passed.delay {
        tokio::time::sleep(delay).await;
    }
    if passed.lose_answer {
        return broken_body();
    }
    with_headers(response, &passed.headers)
}

/// A response whose body fails before anything is written: the client sees the connection close
/// with no answer.
fn broken_body() -> Response {
    let stream = futures_util::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::other("injected lost answer"))
    });
    Response::new(Body::from_stream(stream))
}

type Params = Query<HashMap<String, String>>;

fn ok(data: &Value) -> Response {
    Json(json!({"success": true, "data": data})).into_response()
}

/// v2 is strict (research §2.1): booleans are `true`/`false`, numbers are numbers.
fn v2_bool(params: &HashMap<String, String>, name: &str) -> Result<bool, Early> {
    match params.get(name).map(String::as_str) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(early(
            StatusCode::BAD_REQUEST,
            &format!("{name} must be true or false"),
        )),
    }
}

fn number<T: std::str::FromStr>(
    params: &HashMap<String, String>,
    name: &str,
) -> Result<Option<T>, Early> {
    params
        .get(name)
        .map(|v| {
            v.parse()
                .map_err(|_| early(StatusCode::BAD_REQUEST, &format!("{name} must be a number")))
        })
        .transpose()
}

fn digits(text: &str) -> String {
    text.chars().filter(char::is_ascii_digit).collect()
}

/// Whether `person` is a hit for `term` in `fields`. Pipedrive does not document how phone search
/// treats formatting (research §7 q4); the fixture compares digits only, as a substring without
/// `exact_match` and as the whole number with it. That is the kind reading: a mirror that also
/// checks the candidates' numbers itself works with it and with a stricter server.
fn person_matches(person: &Person, term: &str, fields: &[&str], exact: bool) -> bool {
    let term_lower = term.to_lowercase();
    let text_hit = |value: &str| {
        let value = value.to_lowercase();
        if exact {
            value == term_lower
        } else {
            value.contains(&term_lower)
        }
    };
    let term_digits = digits(term);
    let phone_hit = |value: &str| {
        let value = digits(value);
        !term_digits.is_empty()
            && if exact {
                value == term_digits
            } else {
                value.contains(&term_digits)
            }
    };
    fields.iter().any(|field| match *field {
        "name" => text_hit(&person.name),
        "email" => person.emails.iter().any(|e| text_hit(e)),
        "phone" => person.phones.iter().any(|p| phone_hit(p)),
        _ => false,
    })
}

async fn persons_search(
    State(world): State<Arc<Mutex<World>>>,
    headers: HeaderMap,
    Query(params): Params,
) -> Response {
    let passed = match gate(&world, Route::PersonsSearch, &headers).await {
        Ok(passed) => passed,
        Err(answer) => return answer.into_response(),
    };
    let answer = (|| {
        let exact = v2_bool(&params, "exact_match")?;
        let term = params.get("term").map(String::as_str).unwrap_or_default();
        if term.chars().count() < if exact { 1 } else { 2 } {
            return Err(early(
                StatusCode::BAD_REQUEST,
                "term must be at least 2 characters long (1 with exact_match)",
            ));
        }
        let fields: Vec<&str> = params.get("fields").map_or_else(
            || vec!["custom_fields", "email", "notes", "phone", "name"],
            |f| f.split(',').map(str::trim).collect(),
        );
        if let Some(bad) = fields
            .iter()
            .find(|f| !["custom_fields", "email", "notes", "phone", "name"].contains(f))
        {
            return Err(early(
                StatusCode::BAD_REQUEST,
                &format!("fields: unknown field {bad}"),
            ));
        }
        let limit = number::<usize>(&params, "limit")?.unwrap_or(100);
        if limit == 0 || limit > 500 {
            return Err(early(StatusCode::BAD_REQUEST, "limit must be 1 to 500"));
        }
        let w = lock(&world);
        let items: Vec<Value> = w
            .persons
            .iter()
            .filter(|p| person_matches(p, term, &fields, exact))
            .take(limit)
            .map(|p| {
                json!({
                    "result_score": if exact { 1.0 } else { 0.5 },
                    "item": {
                        "id": p.id, "type": "person", "name": p.name,
                        "phones": p.phones, "emails": p.emails,
                        "visible_to": 3, "owner": {"id": TOKEN_USER_ID},
                        "organization": p.org_id.map(|id| json!({"id": id, "name": "Org", "address": null})),
                        "custom_fields": [], "notes": [],
                    }
                })
            })
            .collect();
        Ok(Json(json!({
            "success": true,
            "data": {"items": items},
            "additional_data": {"next_cursor": null},
        }))
        .into_response())
    })();
    finish(&passed, answer.unwrap_or_else(Early::into_response)).await
}

async fn person_get(
    State(world): State<Arc<Mutex<World>>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let passed = match gate(&world, Route::PersonGet, &headers).await {
        Ok(passed) => passed,
        Err(answer) => return answer.into_response(),
    };
    let answer = {
        let w = lock(&world);
        let person = id
            .parse::<i64>()
            .ok()
            .and_then(|id| w.persons.iter().find(|p| p.id == id));
        match person {
            None => failure(StatusCode::NOT_FOUND, "Person not found"),
            Some(p) => {
                let list = |values: &[String], label: &str| -> Vec<Value> {
                    values
                        .iter()
                        .enumerate()
                        .map(|(i, v)| json!({"value": v, "primary": i == 0, "label": label}))
                        .collect()
                };
                ok(&json!({
                    "id": p.id, "name": p.name, "owner_id": TOKEN_USER_ID, "org_id": p.org_id,
                    "phones": list(&p.phones, "mobile"), "emails": list(&p.emails, "work"),
                    "visible_to": 3,
                }))
            }
        }
    };
    finish(&passed, answer).await
}

async fn deals_list(
    State(world): State<Arc<Mutex<World>>>,
    headers: HeaderMap,
    Query(params): Params,
) -> Response {
    let passed = match gate(&world, Route::Deals, &headers).await {
        Ok(passed) => passed,
        Err(answer) => return answer.into_response(),
    };
    let answer = (|| {
        let person_id = number::<i64>(&params, "person_id")?;
        let limit = number::<usize>(&params, "limit")?.unwrap_or(100).min(500);
        let statuses: Vec<&str> = params
            .get("status")
            .map(|s| s.split(',').collect())
            .unwrap_or_else(|| vec!["open", "won", "lost"]);
        let w = lock(&world);
        let mut deals: Vec<&Deal> = w
            .deals
            .iter()
            .filter(|d| person_id.is_none_or(|p| d.person_id == p))
            .filter(|d| statuses.contains(&d.status.as_str()))
            .collect();
        match params.get("sort_by").map(String::as_str) {
            Some("update_time") => {
                deals.sort_by(|a, b| (&a.update_time, a.id).cmp(&(&b.update_time, b.id)))
            }
            _ => deals.sort_by_key(|d| d.id),
        }
        if params.get("sort_direction").map(String::as_str) == Some("desc") {
            deals.reverse();
        }
        let data: Vec<Value> = deals
            .into_iter()
            .take(limit)
            .map(|d| {
                json!({"id": d.id, "title": d.title, "person_id": d.person_id, "org_id": null,
                       "status": d.status, "update_time": d.update_time, "is_archived": false})
            })
            .collect();
        Ok(
            Json(json!({"success": true, "data": data, "additional_data": {"next_cursor": null}}))
                .into_response(),
        )
    })();
    finish(&passed, answer.unwrap_or_else(Early::into_response)).await
}

async fn leads_list(
    State(world): State<Arc<Mutex<World>>>,
    headers: HeaderMap,
    Query(params): Params,
) -> Response {
    let passed = match gate(&world, Route::Leads, &headers).await {
        Ok(passed) => passed,
        Err(answer) => return answer.into_response(),
    };
    let answer = (|| {
        let person_id = number::<i64>(&params, "person_id")?;
        let start = number::<usize>(&params, "start")?.unwrap_or(0);
        let limit = number::<usize>(&params, "limit")?.unwrap_or(100).min(500);
        let archived = params.get("archived_status").map_or("all", String::as_str);
        let w = lock(&world);
        let mut leads: Vec<&Lead> = w
            .leads
            .iter()
            .filter(|l| person_id.is_none_or(|p| l.person_id == p))
            .filter(|l| match archived {
                "archived" => l.archived,
                "not_archived" => !l.archived,
                _ => true,
            })
            .collect();
        if params
            .get("sort")
            .is_some_and(|s| s.starts_with("update_time"))
        {
            leads.sort_by(|a, b| a.update_time.cmp(&b.update_time));
            if params.get("sort").is_some_and(|s| s.ends_with("DESC")) {
                leads.reverse();
            }
        }
        let total = leads.len();
        let data: Vec<Value> = leads
            .into_iter()
            .skip(start)
            .take(limit)
            .map(|l| {
                json!({"id": l.id, "title": l.title, "person_id": l.person_id,
                       "organization_id": null, "is_archived": l.archived,
                       "update_time": l.update_time})
            })
            .collect();
        let more = start + limit < total;
        Ok(Json(
            json!({"success": true, "data": data, "additional_data": {"pagination":
            {"start": start, "limit": limit, "more_items_in_collection": more,
             "next_start": if more { Some(start + limit) } else { None }}}}),
        )
        .into_response())
    })();
    finish(&passed, answer.unwrap_or_else(Early::into_response)).await
}

fn note_json(note: &Note, w: &World) -> Value {
    let person = note
        .person_id
        .and_then(|id| w.persons.iter().find(|p| p.id == id))
        .map(|p| json!({"name": p.name}));
    let deal = note
        .deal_id
        .and_then(|id| w.deals.iter().find(|d| d.id == id))
        .map(|d| json!({"title": d.title}));
    json!({
        "id": note.id, "active_flag": true, "content": note.content,
        "add_time": note.add_time, "update_time": note.update_time,
        "person_id": note.person_id, "deal_id": note.deal_id, "lead_id": note.lead_id,
        "org_id": note.org_id, "project_id": null, "task_id": null,
        "user_id": note.user_id, "last_update_user_id": note.last_update_user_id,
        "person": person, "deal": deal, "organization": null, "project": null,
        "user": {"email": "mirror@example.com", "icon_url": null,
                 "is_you": note.user_id == TOKEN_USER_ID, "name": "Mirror"},
        "pinned_to_deal_flag": false, "pinned_to_person_flag": false,
        "pinned_to_organization_flag": false, "pinned_to_project_flag": false,
        "pinned_to_task_flag": false,
    })
}

/// An id in a JSON body: a number (v1 also takes a numeric string), or absent/null.
fn body_id(body: &Value, name: &str) -> Result<Option<i64>, Early> {
    match &body[name] {
        Value::Null => Ok(None),
        Value::Number(n) => n.as_i64().map(Some).ok_or(()),
        Value::String(s) => s.parse().map(Some).map_err(|_| ()),
        _ => Err(()),
    }
    .map_err(|()| {
        early(
            StatusCode::BAD_REQUEST,
            &format!("{name} must be an integer"),
        )
    })
}

fn checked_content(content: &str) -> Result<String, Early> {
    if content.chars().count() > MAX_NOTE_CHARS {
        return Err(early(
            StatusCode::BAD_REQUEST,
            "Note content exceeds the maximum size of 100000 characters",
        ));
    }
    Ok(sanitize(content))
}

/// Applies the link fields of `body` to `note`, checking that they exist.
fn apply_links(note: &mut Note, body: &Value, w: &World) -> Result<(), Early> {
    if let Some(person_id) = body_id(body, "person_id")? {
        if !w.persons.iter().any(|p| p.id == person_id) {
            return Err(early(StatusCode::BAD_REQUEST, "Person not found"));
        }
        note.person_id = Some(person_id);
    }
    if let Some(deal_id) = body_id(body, "deal_id")? {
        if !w.deals.iter().any(|d| d.id == deal_id) {
            return Err(early(StatusCode::BAD_REQUEST, "Deal not found"));
        }
        note.deal_id = Some(deal_id);
    }
    if let Some(org_id) = body_id(body, "org_id")? {
        note.org_id = Some(org_id);
    }
    match &body["lead_id"] {
        Value::Null => {}
        Value::String(lead) if w.leads.iter().any(|l| &l.id == lead) => {
            note.lead_id = Some(lead.clone());
        }
        _ => return Err(early(StatusCode::BAD_REQUEST, "Lead not found")),
    }
    Ok(())
}

fn json_body(body: &Bytes) -> Result<Value, Early> {
    serde_json::from_slice::<Value>(body)
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| early(StatusCode::BAD_REQUEST, "Invalid JSON body"))
}

async fn notes_add(
    State(world): State<Arc<Mutex<World>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let passed = match gate(&world, Route::NotesAdd, &headers).await {
        Ok(passed) => passed,
        Err(answer) => return answer.into_response(),
    };
    let answer = (|| {
        let body = json_body(&body)?;
        let Some(content) = body["content"].as_str().filter(|c| !c.trim().is_empty()) else {
            return Err(early(StatusCode::BAD_REQUEST, "Content is required"));
        };
        let content = checked_content(content)?;
        let mut w = lock(&world);
        let now = w.now_text();
        let add_time = match &body["add_time"] {
            Value::Null => now.clone(),
            _ if w.refuse_add_time => {
                return Err(early(
                    StatusCode::FORBIDDEN,
                    "Only admin users can set add_time",
                ));
            }
            Value::String(t)
                if chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S").is_ok() =>
            {
                t.clone()
            }
            _ => {
                return Err(early(
                    StatusCode::BAD_REQUEST,
                    "add_time must be YYYY-MM-DD HH:MM:SS",
                ));
            }
        };
        let mut note = Note {
            id: 0,
            content,
            person_id: None,
            deal_id: None,
            lead_id: None,
            org_id: None,
            add_time,
            update_time: now,
            user_id: TOKEN_USER_ID,
            last_update_user_id: TOKEN_USER_ID,
        };
        apply_links(&mut note, &body, &w)?;
        if note.person_id.is_none()
            && note.deal_id.is_none()
            && note.lead_id.is_none()
            && note.org_id.is_none()
        {
            return Err(early(
                StatusCode::BAD_REQUEST,
                "One of lead_id, deal_id, person_id, org_id, project_id or task_id is required",
            ));
        }
        note.id = w.take_id();
        w.notes_created += 1;
        let data = note_json(&note, &w);
        w.notes.push(note);
        Ok(ok(&data))
    })();
    finish(&passed, answer.unwrap_or_else(Early::into_response)).await
}

async fn note_get(
    State(world): State<Arc<Mutex<World>>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let passed = match gate(&world, Route::NoteGet, &headers).await {
        Ok(passed) => passed,
        Err(answer) => return answer.into_response(),
    };
    let answer = {
        let w = lock(&world);
        let note = id
            .parse::<i64>()
            .ok()
            .and_then(|id| w.notes.iter().find(|n| n.id == id));
        match note {
            None => failure(StatusCode::NOT_FOUND, "Note not found"),
            Some(note) => ok(&note_json(note, &w)),
        }
    };
    finish(&passed, answer).await
}

async fn note_update(
    State(world): State<Arc<Mutex<World>>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let passed = match gate(&world, Route::NoteUpdate, &headers).await {
        Ok(passed) => passed,
        Err(answer) => return answer.into_response(),
    };
    let answer = (|| {
        let body = json_body(&body)?;
        let content = match &body["content"] {
            Value::Null => None,
            Value::String(c) => Some(checked_content(c)?),
            _ => return Err(early(StatusCode::BAD_REQUEST, "content must be a string")),
        };
        let mut w = lock(&world);
        let now = w.now_text();
        let Some(index) = id
            .parse::<i64>()
            .ok()
            .and_then(|id| w.notes.iter().position(|n| n.id == id))
        else {
            return Err(early(StatusCode::NOT_FOUND, "Note not found"));
        };
        // A partial update: what is left out keeps its value (research §1.6).
        let mut note = w.notes[index].clone();
        apply_links(&mut note, &body, &w)?;
        if let Some(content) = content {
            note.content = content;
        }
        note.update_time = now;
        note.last_update_user_id = TOKEN_USER_ID;
        let data = note_json(&note, &w);
        w.notes[index] = note;
        Ok(ok(&data))
    })();
    finish(&passed, answer.unwrap_or_else(Early::into_response)).await
}

async fn notes_list(
    State(world): State<Arc<Mutex<World>>>,
    headers: HeaderMap,
    Query(params): Params,
) -> Response {
    let passed = match gate(&world, Route::NotesList, &headers).await {
        Ok(passed) => passed,
        Err(answer) => return answer.into_response(),
    };
    let answer = (|| {
        let person_id = number::<i64>(&params, "person_id")?;
        let deal_id = number::<i64>(&params, "deal_id")?;
        let org_id = number::<i64>(&params, "org_id")?;
        let user_id = number::<i64>(&params, "user_id")?;
        let lead_id = params.get("lead_id");
        let start = number::<usize>(&params, "start")?.unwrap_or(0);
        let limit = number::<usize>(&params, "limit")?.unwrap_or(100).min(500);
        let date = |name: &str| -> Result<Option<String>, Early> {
            params
                .get(name)
                .map(|d| {
                    chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
                        .map(|_| d.clone())
                        .map_err(|_| {
                            early(
                                StatusCode::BAD_REQUEST,
                                &format!("{name} must be YYYY-MM-DD"),
                            )
                        })
                })
                .transpose()
        };
        let (start_date, end_date) = (date("start_date")?, date("end_date")?);
        let w = lock(&world);
        let mut notes: Vec<&Note> = w
            .notes
            .iter()
            .filter(|n| person_id.is_none_or(|p| n.person_id == Some(p)))
            .filter(|n| deal_id.is_none_or(|d| n.deal_id == Some(d)))
            .filter(|n| org_id.is_none_or(|o| n.org_id == Some(o)))
            .filter(|n| user_id.is_none_or(|u| n.user_id == u))
            .filter(|n| lead_id.is_none_or(|l| n.lead_id.as_ref() == Some(l)))
            // By the day of add_time (UTC), both ends included.
            .filter(|n| start_date.as_ref().is_none_or(|d| n.add_time[..10] >= **d))
            .filter(|n| end_date.as_ref().is_none_or(|d| n.add_time[..10] <= **d))
            .collect();
        let sort = params.get("sort").map_or("id ASC", String::as_str);
        // Stable sorts applied from the last key to the first: the first key wins.
        for key in sort.split(',').map(str::trim).rev() {
            let (field, direction) = key.split_once(' ').unwrap_or((key, "ASC"));
            let descending = direction.eq_ignore_ascii_case("DESC");
            match field {
                "id" => notes.sort_by_key(|n| n.id),
                "add_time" => notes.sort_by(|a, b| a.add_time.cmp(&b.add_time)),
                "update_time" => notes.sort_by(|a, b| a.update_time.cmp(&b.update_time)),
                "person_id" => notes.sort_by_key(|n| n.person_id),
                "deal_id" => notes.sort_by_key(|n| n.deal_id),
                "org_id" => notes.sort_by_key(|n| n.org_id),
                "user_id" => notes.sort_by_key(|n| n.user_id),
                "content" => notes.sort_by(|a, b| a.content.cmp(&b.content)),
                _ => {
                    return Err(early(
                        StatusCode::BAD_REQUEST,
                        &format!("sort: unknown field {field}"),
                    ));
                }
            }
            if descending {
                notes.reverse();
            }
        }
        let total = notes.len();
        let data: Vec<Value> = notes
            .into_iter()
            .skip(start)
            .take(limit)
            .map(|n| note_json(n, &w))
            .collect();
        let more = start + limit < total;
        Ok(Json(
            json!({"success": true, "data": data, "additional_data": {"pagination":
            {"start": start, "limit": limit, "more_items_in_collection": more,
             "next_start": if more { Some(start + limit) } else { None }}}}),
        )
        .into_response())
    })();
    finish(&passed, answer.unwrap_or_else(Early::into_response)).await
}

/// The tags a note keeps. Pipedrive documents only "subject to sanitization on the back-end"
/// (research §1.8); this is the subset integrations are seen to send and keep, plus the plain
/// block tags. Everything else is dropped, keeping its text.
const ALLOWED_TAGS: &[&str] = &[
    "a",
    "b",
    "blockquote",
    "br",
    "div",
    "em",
    "hr",
    "i",
    "li",
    "ol",
    "p",
    "small",
    "span",
    "strong",
    "u",
    "ul",
];

/// Sanitises note HTML the way the fixture reads "subject to sanitization": `script` and `style`
/// go with their content, `img` and other unknown tags go (their text stays), comments go, every
/// attribute goes except an `http(s)`/`mailto` `href` on `a`, and a `<` that starts no tag is
/// escaped. Text and entities are kept as sent: a mirror that escapes its text sees it come back
/// unchanged.
pub fn sanitize(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(open) = rest.find('<') {
        out.push_str(&rest[..open]);
        rest = &rest[open..];
        if let Some(after) = rest.strip_prefix("<!--") {
            rest = after.find("-->").map_or("", |end| &after[end + 3..]);
            continue;
        }
        let Some(close) = rest.find('>') else {
            out.push_str("&lt;");
            rest = &rest[1..];
            continue;
        };
        let inner = &rest[1..close];
        let closing = inner.starts_with('/');
        let body = inner.trim_start_matches('/');
        let name: String = body
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .collect::<String>()
            .to_ascii_lowercase();
        if name.is_empty() || !body.starts_with(|c: char| c.is_ascii_alphabetic()) {
            out.push_str("&lt;");
            rest = &rest[1..];
            continue;
        }
        rest = &rest[close + 1..];
        if !closing && (name == "script" || name == "style") {
            let end = format!("</{name}");
            let lower = rest.to_ascii_lowercase();
            rest = match lower.find(&end) {
                Some(at) => rest[at..].find('>').map_or("", |gt| &rest[at + gt + 1..]),
                None => "",
            };
            continue;
        }
        if !ALLOWED_TAGS.contains(&name.as_str()) {
            continue;
        }
        if closing {
            out.push_str(&format!("</{name}>"));
        } else if name == "a" {
            match href(&body[name.len()..]) {
                Some(href) => out.push_str(&format!("<a href=\"{href}\">")),
                None => out.push_str("<a>"),
            }
        } else {
            out.push_str(&format!("<{name}>"));
        }
    }
    out.push_str(rest);
    out
}

/// The `href` of an `a` tag's attribute text, if it is a double- or single-quoted http(s) or
/// mailto URL (quotes inside it are kept escaped).
fn href(attributes: &str) -> Option<String> {
    let at = attributes.to_ascii_lowercase().find("href=")?;
    let value = &attributes[at + 5..];
    let quote = value.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let value = &value[1..];
    let value = &value[..value.find(quote)?];
    let lower = value.trim().to_ascii_lowercase();
    (lower.starts_with("http://") || lower.starts_with("https://") || lower.starts_with("mailto:"))
        .then(|| value.trim().replace('"', "&quot;"))
}
