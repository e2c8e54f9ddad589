//! The relay against a model: random sequences of every Channels operation (add and delete
//! channels, receives with edits and status changes, delete conversations, repeats of earlier
//! calls) go to two hubs on 127.0.0.1:
//!
//! - "direct" gets each call straight over HTTP: the model;
//! - "upstream" gets it through a relaying hub (its outbox and relay), through a fault proxy
//!   that answers 5xx, breaks connections before or after the upstream applied the call, holds
//!   answers past the client's timeout, redirects to another host, or lets the test kill the
//!   relaying hub while a call is in flight (and start it again on the same database).
//!
//! Each call is answered by the relaying hub before the next is sent, as a real client waits.
//! Once the relay's outbox is drained, the upstream must hold exactly what the direct hub holds,
//! each call must have ended the same way on both sides (a call the upstream rejects, e.g. a
//! receive for a deleted channel, is rejected with the same status and code), and the other
//! host must have got nothing.
//!
//! `PDCHANNELS_MODEL_CASES` sets the number of cases (default 16) for longer local runs.

mod ops;
mod relaying;
mod state;

use std::fmt::Write as _;
use std::time::Duration;

use ops::{Call, Step, Trouble};
use pdchannels_store::Store;
use pdchannels_testkit::{Fault, FaultProxy, StrayHost};
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use relaying::{RelayingHub, Setup};
use secrecy::ExposeSecret;
use serde_json::Value;
use tempfile::TempDir;

/// Calls per case, at most.
const MAX_STEPS: usize = 40;
/// Every HTTP call the test makes has this deadline, so a missing answer fails the case.
const CALL_DEADLINE: Duration = Duration::from_secs(20);
/// How long the relay may take to deliver what is left once the calls are made.
const DRAIN_DEADLINE: Duration = Duration::from_secs(30);

/// How a call ended, as the caller learnt it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// 200.
    Done,
    /// Rejected for good with this status; `detail` is the error text (the direct hub's code;
    /// through the relay, the upstream's words quoted, code included).
    Rejected { status: u16, detail: String },
    /// Through the relay: accepted into the outbox (202), not delivered within the caller's
    /// wait; how it ended is read from the outbox after the drain.
    Queued(i64),
    /// Through the relay: given up for a reason other than an upstream rejection (502
    /// UPSTREAM_REJECTED), e.g. a redirect it refuses to follow.
    GaveUp(String),
    /// The relaying hub was killed while the call was in flight: the caller got no answer (the
    /// call is in the outbox: the upstream got it).
    NoAnswer,
}

/// One hub's side of the case, as a client sees it.
struct Hub {
    url: String,
    token: String,
    _store: Store,
}

async fn upstream_hub(dir: &TempDir, name: &str) -> Hub {
    let store = Store::open(&dir.path().join(format!("{name}.db")))
        .await
        .expect("the hub's database opens");
    let token = store
        .create_token("model")
        .await
        .expect("a token")
        .secret
        .expose_secret()
        .to_owned();
    let url = pdchannels_testkit::spawn_hub(&store).await;
    Hub {
        url,
        token,
        _store: store,
    }
}

async fn send(
    http: &reqwest::Client,
    hub: &str,
    token: &str,
    call: &Call,
) -> Result<(u16, Value), String> {
    let request = call.request();
    let url = format!("{hub}/v1{}", request.path);
    let mut builder = match request.method {
        "DELETE" => http.delete(&url),
        _ => http.post(&url),
    }
    .header("x-api-token", token);
    if let Some(body) = &request.body {
        builder = builder.json(body);
    }
    let answer = builder
        .send()
        .await
        .map_err(|e| format!("{} {url}: {e}", request.method))?;
    let status = answer.status().as_u16();
    let body = answer
        .json()
        .await
        .map_err(|e| format!("{} {url}: the body is not JSON: {e}", request.method))?;
    Ok((status, body))
}

fn direct_outcome(status: u16, body: &Value) -> Result<Outcome, String> {
    match status {
        200 => Ok(Outcome::Done),
        400..=499 => Ok(Outcome::Rejected {
            status,
            detail: body["additional_data"]["code"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        }),
        _ => Err(format!("the direct hub answered {status}: {body}")),
    }
}

fn relayed_outcome(status: u16, body: &Value) -> Result<Outcome, String> {
    let code = body["additional_data"]["code"].as_str().unwrap_or_default();
    let error = body["error"].as_str().unwrap_or_default().to_owned();
    match (status, code) {
        (200, _) => Ok(Outcome::Done),
        (202, _) => {
            // Every operation answers a queued call alike: `additional_data.queued`.
            let id = body["additional_data"]["queued"]["outbox_id"]
                .as_i64()
                .ok_or_else(|| format!("a 202 without its outbox id: {body}"))?;
            Ok(Outcome::Queued(id))
        }
        (400..=499, "UPSTREAM_REJECTED") => Ok(Outcome::Rejected {
            status,
            detail: error,
        }),
        (502, "UPSTREAM_REJECTED") => Ok(Outcome::GaveUp(error)),
        _ => Err(format!("the relaying hub answered {status}: {body}")),
    }
}

/// The proxy faults for a step's troubles, and how many answers are held up to and including
/// its first crash (when it has one).
fn faults(troubles: &[Trouble], stray: &str) -> (Vec<Fault>, Option<usize>) {
    let mut held = 0;
    let mut crash_at = None;
    let faults = troubles
        .iter()
        .map(|trouble| match *trouble {
            Trouble::ServerError(status) => Fault::Status(status),
            Trouble::Drop => Fault::Drop,
            Trouble::LoseAnswer => Fault::LoseAnswer,
            Trouble::Timeout | Trouble::Crash => {
                held += 1;
                if *trouble == Trouble::Crash && crash_at.is_none() {
                    crash_at = Some(held);
                }
                Fault::HoldAnswer
            }
            Trouble::Redirect(status) => Fault::Redirect {
                status,
                location: stray.to_owned(),
            },
        })
        .collect();
    (faults, crash_at)
}

/// Runs one case; `Err` says what differs, with the steps.
async fn run_case(steps: &[Step]) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let direct = upstream_hub(&dir, "direct").await;
    let upstream = upstream_hub(&dir, "upstream").await;
    let proxy = FaultProxy::spawn(&upstream.url).await;
    let stray = StrayHost::spawn().await;
    let setup = Setup {
        db: dir.path().join("relaying.db"),
        upstream: proxy.address.clone(),
        upstream_token: upstream.token.clone(),
    };
    let mut relaying = RelayingHub::start(&setup, None).await;
    let http = reqwest::Client::builder()
        .timeout(CALL_DEADLINE)
        .build()
        .map_err(|e| e.to_string())?;
    let mut held = proxy.held();

    let mut problems = String::new();
    // For each step: what the direct hub answered (None: skipped), and the relayed outcome.
    let mut outcomes: Vec<(Option<Outcome>, Outcome)> = Vec::with_capacity(steps.len());
    for step in steps {
        let (faults, crash_at) = faults(&step.troubles, &stray.address);
        proxy.push(faults);
        let relayed = match crash_at {
            None => {
                let (status, body) =
                    send(&http, &relaying.url, &relaying.token, &step.call).await?;
                relayed_outcome(status, &body)?
            }
            Some(crash_at) => {
                let target = *held.borrow_and_update() + crash_at;
                let caller = {
                    let (http, url, token, call) = (
                        http.clone(),
                        relaying.url.clone(),
                        relaying.token.clone(),
                        step.call.clone(),
                    );
                    tokio::spawn(async move { send(&http, &url, &token, &call).await })
                };
                let crash_point =
                    tokio::time::timeout(CALL_DEADLINE, held.wait_for(|n| *n >= target));
                tokio::pin!(caller);
                tokio::select! {
                    // It ended before reaching the crash (given up, say): an ordinary answer.
                    answer = &mut caller => {
                        let (status, body) = answer.map_err(|e| e.to_string())??;
                        relayed_outcome(status, &body)?
                    }
                    reached = crash_point => {
                        reached
                            .map_err(|_| format!("the crash point of `{step}` was never reached"))?
                            .map_err(|e| e.to_string())?;
                        caller.abort();
                        relaying = relaying.crash_and_restart(&setup).await;
                        Outcome::NoAnswer
                    }
                }
            }
        };
        // Faults the call did not use (it was rejected before) are not the next call's.
        proxy.clear();
        let redirected = step
            .troubles
            .iter()
            .any(|t| matches!(t, Trouble::Redirect(_)));
        // A relay may refuse a redirect for good: then the call happened nowhere, and the
        // direct hub does not get it either.
        let direct_outcome = if matches!(relayed, Outcome::GaveUp(_)) && redirected {
            None
        } else {
            let (status, body) = send(&http, &direct.url, &direct.token, &step.call).await?;
            Some(direct_outcome(status, &body)?)
        };
        outcomes.push((direct_outcome, relayed));
    }

    relaying.wait_until_drained(DRAIN_DEADLINE).await?;

    for (n, (step, (direct, relayed))) in steps.iter().zip(&outcomes).enumerate() {
        let Some(direct) = direct else { continue };
        let relayed = match relayed {
            Outcome::Queued(id) => match relaying.settled(*id).await? {
                None => Outcome::Done,
                Some(last_error) => Outcome::Rejected {
                    status: last_error
                        .strip_prefix("upstream answered ")
                        .and_then(|rest| rest.get(..3))
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0),
                    detail: last_error,
                },
            },
            other => other.clone(),
        };
        // A delete whose answer was lost is retried; a 404 then is taken as that lost send's
        // doing (the relay cannot tell it from a delete of something that never existed),
        // so the relay may say done where the direct hub said 404. A connection dropped after
        // the request went out (`Drop`, as the client sees it) is the same doubt.
        let answer_lost = step.troubles.iter().any(|t| {
            matches!(
                t,
                Trouble::Drop | Trouble::LoseAnswer | Trouble::Timeout | Trouble::Crash
            )
        });
        let deletes = matches!(
            step.call,
            Call::DeleteChannel { .. } | Call::DeleteConversation { .. }
        );
        let same = match (direct, &relayed) {
            (Outcome::Done, Outcome::Done) | (_, Outcome::NoAnswer) => true,
            (Outcome::Rejected { status: 404, .. }, Outcome::Done) => deletes && answer_lost,
            (
                Outcome::Rejected {
                    status,
                    detail: code,
                },
                Outcome::Rejected {
                    status: relayed_status,
                    detail,
                },
            ) => status == relayed_status && detail.contains(code.as_str()),
            _ => false,
        };
        if !same {
            let _ = writeln!(
                problems,
                "step {n} `{step}`: the direct hub: {direct:?}; through the relay: {relayed:?}"
            );
        }
    }

    let strays = stray.requests();
    if !strays.is_empty() {
        let _ = writeln!(
            problems,
            "the relay followed redirects to another host: {strays:?}"
        );
    }

    let expected = state::snapshot(&http, &direct.url, &direct.token).await?;
    let found = state::snapshot(&http, &upstream.url, &upstream.token).await?;
    if expected != found {
        let _ = writeln!(
            problems,
            "the upstream's state differs from the direct hub's.\ndirect:\n{}\nupstream:\n{}",
            serde_json::to_string_pretty(&expected).unwrap_or_default(),
            serde_json::to_string_pretty(&found).unwrap_or_default(),
        );
    }
    relaying.stop().await;

    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

fn describe(steps: &[Step]) -> String {
    steps
        .iter()
        .enumerate()
        .map(|(n, step)| format!("  {n:2}. {step}\n"))
        .collect()
}

#[test]
fn the_upstream_ends_as_a_hub_that_got_the_same_calls_directly() {
    let cases = std::env::var("PDCHANNELS_MODEL_CASES")
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("PDCHANNELS_MODEL_CASES must be a number, got {v:?}"))
        })
        .unwrap_or(16);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let mut runner = TestRunner::new(Config {
        cases,
        // Shrinking reruns whole cases: bound it so a failure is reported in minutes, not hours.
        max_shrink_iters: 256,
        max_shrink_time: 120_000,
        // No regression files: the failing sequence is printed instead.
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&ops::steps(MAX_STEPS), |planned| {
        let steps = ops::resolve(&planned);
        runtime
            .block_on(run_case(&steps))
            .map_err(|problems| TestCaseError::fail(format!("{}\n{problems}", describe(&steps))))
    });
    if let Err(failure) = result {
        panic!("the relay diverged from the model.\n{failure}");
    }
}
