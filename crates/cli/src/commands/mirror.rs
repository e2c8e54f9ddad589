//! `pdchannels mirror`: the notes mirror alone, and `link`, `unlink`, `pending`, `status`;
//! [`build`] makes the mirror `serve --mirror` runs too.

use std::process::ExitCode;

use anyhow::{Result, anyhow, bail};
use chrono::{DateTime, Utc};
use pdchannels_client::Credentials;
use pdchannels_client::oauth::{OAuthSession, TokenFile};
use pdchannels_mirror::budget::BudgetConfig;
use pdchannels_mirror::ledger::{budget_day, day_key};
use pdchannels_mirror::pipedrive::PipedriveClient;
use pdchannels_mirror::worker::{Mirror, MirrorConfig};
use pdchannels_store::{Database, FlushTiming, MirrorLink, MirrorTarget, Store};
use serde_json::json;

use super::table::{Align, Table};
use super::{open_existing_store, open_store, print_json_lines, print_stdout};
use crate::args::{MirrorCommand, MirrorCommandArgs, MirrorRunArgs, OAuthFileArgs};
use crate::{paths, secrets};

pub async fn run(db: &Database, args: MirrorCommandArgs) -> Result<ExitCode> {
    match args.command {
        None => run_alone(db, &args.run, &args.oauth_file).await,
        Some(MirrorCommand::Link {
            channel,
            conversation,
            person,
            deal,
            lead,
            org,
        }) => {
            let store = open_existing_store(db).await?;
            let target = MirrorTarget {
                person_id: person,
                org_id: org,
                deal_id: deal,
                lead_id: lead.clone(),
            };
            let linked = store
                .mirror_link_manually(&channel, &conversation, target)
                .await;
            store.close().await;
            if !linked? {
                bail!(
                    "no conversation {conversation:?} in channel {channel:?}: `pdchannels mirror pending` lists the ones waiting for a link"
                );
            }
            let on = match (deal, lead) {
                (Some(deal), _) => format!(" and deal {deal}"),
                (None, Some(lead)) => format!(" and lead {lead}"),
                (None, None) => String::new(),
            };
            eprintln!(
                "linked {channel}/{conversation} to person {person}{on}; the mirror (`pdchannels mirror`, or `serve --mirror`) writes its days as notes when it runs"
            );
            Ok(ExitCode::SUCCESS)
        }
        Some(MirrorCommand::Unlink {
            channel,
            conversation,
        }) => {
            let store = open_existing_store(db).await?;
            let gone = store.mirror_unlink(&channel, &conversation).await;
            store.close().await;
            if !gone? {
                bail!("{channel}/{conversation} has no mirror link");
            }
            eprintln!("unlinked {channel}/{conversation}; the mirror looks it up again");
            Ok(ExitCode::SUCCESS)
        }
        Some(MirrorCommand::Pending { limit, json }) => {
            let store = open_existing_store(db).await?;
            let pending = store.mirror_pending(limit).await;
            store.close().await;
            print_pending(&pending?, json);
            Ok(ExitCode::SUCCESS)
        }
        Some(MirrorCommand::Status {
            json,
            mirror_quiet,
            mirror_max_wait,
        }) => {
            let store = open_existing_store(db).await?;
            let timing = FlushTiming {
                quiet_ms: millis(mirror_quiet),
                max_wait_ms: millis(mirror_max_wait),
            };
            let status = store.mirror_status(&day_key(budget_day()), timing).await;
            store.close().await;
            print_status(&status?, json);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

async fn run_alone(
    db: &Database,
    args: &MirrorRunArgs,
    oauth_file: &OAuthFileArgs,
) -> Result<ExitCode> {
    let client = client(args, oauth_file)?;
    let store = open_store(db).await?;
    let zone = match time_zone(&store, args).await {
        Ok(zone) => zone,
        Err(e) => {
            store.close().await;
            return Err(e);
        }
    };
    let mirror = Mirror::new(store.clone(), client, config(args, zone));
    if let Err(e) = mirror.check().await {
        store.close().await;
        bail!("{e}");
    }
    eprintln!(
        "notes mirror of {} writing to {} (time zone {}, budget {}); stop with Ctrl-C",
        db,
        mirror_target(args, oauth_file),
        zone,
        args.mirror_budget
    );
    let stop = crate::signals::stop_on_signal();
    mirror.run(stop).await;
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

fn mirror_target(args: &MirrorRunArgs, oauth_file: &OAuthFileArgs) -> String {
    destination(args, oauth_file).map_or_else(|_| "Pipedrive".to_owned(), |(base, _)| base)
}

/// The mirror `serve --mirror` runs, on the hub's store (checked: its time zone is the
/// database's).
pub async fn build(
    store: &Store,
    args: &MirrorRunArgs,
    oauth_file: &OAuthFileArgs,
) -> Result<Mirror> {
    let client = client(args, oauth_file)?;
    let zone = time_zone(store, args).await?;
    let mirror = Mirror::new(store.clone(), client, config(args, zone));
    mirror.check().await.map_err(|e| anyhow!("{e}"))?;
    Ok(mirror)
}

/// The company's time zone: `--time-zone`, else the one the database's first mirror recorded.
/// A first mirror must be told: its zone is recorded for good, so a guess (UTC) would cut every
/// note's day wrong from then on.
async fn time_zone(store: &Store, args: &MirrorRunArgs) -> Result<chrono_tz::Tz> {
    if let Some(zone) = args.time_zone {
        return Ok(zone);
    }
    match store.mirror_setting("time_zone").await? {
        Some(name) => name.parse().map_err(|_| {
            anyhow!(
                "this database's notes are days of the time zone {name:?}, which this build of pdchannels does not know: run a newer build (its time zone data is compiled in)"
            )
        }),
        None => bail!(
            "the notes mirror's first run on a database needs the company's time zone, which it records for good (each note is one local day): pass --time-zone with an IANA name such as Europe/London or America/Sao_Paulo (or set PDCHANNELS_TIME_ZONE)"
        ),
    }
}

fn config(args: &MirrorRunArgs, zone: chrono_tz::Tz) -> MirrorConfig {
    MirrorConfig {
        calling_code: args.calling_code.clone(),
        budget: BudgetConfig {
            share: args.mirror_budget,
            quiet: args.mirror_quiet,
            max_wait: args.mirror_max_wait,
            ..BudgetConfig::default()
        },
        lease: args.mirror_lease,
        ..MirrorConfig::new(zone)
    }
}

fn client(args: &MirrorRunArgs, oauth_file: &OAuthFileArgs) -> Result<PipedriveClient> {
    let (base, credentials) = destination(args, oauth_file)?;
    PipedriveClient::builder(base, credentials)
        .build()
        .map_err(|e| anyhow!("--pipedrive-url: {e}"))
}

/// The company's base URL and the credentials, as the relay takes them: an API token from the
/// environment or a file, or the OAuth login.
fn destination(args: &MirrorRunArgs, oauth_file: &OAuthFileArgs) -> Result<(String, Credentials)> {
    if args.pipedrive_oauth {
        let file = TokenFile::new(paths::oauth_file(oauth_file.oauth_file.as_deref())?);
        let session = OAuthSession::from_file(file)?;
        let base = match &args.pipedrive_url {
            Some(url) => url.clone(),
            None => session.tokens().api_domain.clone().ok_or_else(|| {
                anyhow!("the saved login has no api_domain; pass --pipedrive-url as well")
            })?,
        };
        return Ok((base, Credentials::OAuth(session)));
    }
    let token = secrets::PIPEDRIVE_TOKEN
        .resolve(
            args.pipedrive_token.clone(),
            args.pipedrive_token_file.as_deref(),
        )?
        .ok_or_else(|| {
            anyhow!(
                "the notes mirror needs Pipedrive credentials: set PDCHANNELS_PIPEDRIVE_TOKEN (or pass --pipedrive-token-file PATH), or pass --pipedrive-oauth after `pdchannels auth login`"
            )
        })?;
    let Some(base) = args.pipedrive_url.clone() else {
        bail!(
            "the notes mirror needs the company's address: --pipedrive-url https://COMPANY.pipedrive.com (or PDCHANNELS_PIPEDRIVE_URL)"
        );
    };
    Ok((base, Credentials::ApiToken(token)))
}

fn time(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}

fn print_pending(pending: &[MirrorLink], json: bool) {
    if json {
        let rows: Vec<serde_json::Value> = pending
            .iter()
            .map(|l| {
                json!({
                    "channel_id": l.channel_id,
                    "conversation_id": l.conversation_id,
                    "state": l.state,
                    "candidates": l.candidates,
                    "looked_up_at": time(l.updated_at_ms),
                })
            })
            .collect();
        print_json_lines(&rows);
        return;
    }
    if pending.is_empty() {
        eprintln!("no conversation waits for a link");
        return;
    }
    let mut table = Table::new(&[
        ("CHANNEL", Align::Left),
        ("CONVERSATION", Align::Left),
        ("STATE", Align::Left),
        ("CANDIDATES", Align::Left),
    ]);
    for link in pending {
        let candidates = link
            .candidates
            .as_ref()
            .and_then(|c| c.as_array())
            .map(|list| {
                list.iter()
                    .map(|c| {
                        format!(
                            "{} (person {})",
                            c["name"].as_str().unwrap_or("?"),
                            c["person_id"]
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        table.push(vec![
            link.channel_id.clone(),
            link.conversation_id.clone(),
            link.state.clone(),
            candidates,
        ]);
    }
    print_stdout(&table.render());
    eprintln!(
        "link one with `pdchannels mirror link CHANNEL CONVERSATION --person ID [--deal ID | --lead UUID]`"
    );
}

fn print_status(status: &pdchannels_store::MirrorStatus, json: bool) {
    let next = status.next_flush_ms.map(|ms| {
        if ms <= pdchannels_model::Timestamp::now().unix_millis() {
            "now".to_owned()
        } else {
            time(ms)
        }
    });
    if json {
        print_stdout(
            &serde_json::to_string_pretty(&json!({
                "to_look_up": status.to_look_up,
                "linked": status.linked,
                "parked": status.parked,
                "unmatched": status.unmatched,
                "notes_live": status.notes_live,
                "notes_sealed": status.notes_sealed,
                "uncertain": status.uncertain,
                "waiting_to_write": status.dirty,
                "stopped": status.stopped,
                "trouble": status.trouble,
                "tokens_today": status.tokens_today,
                "next_flush": next,
            }))
            .expect("a JSON object serializes"),
        );
        return;
    }
    print_stdout(&format!(
        "conversations: {} linked, {} parked, {} unmatched, {} not looked up yet\n\
         notes: {} live, {} sealed, {} being reconciled, {} with messages to write\n\
         tokens spent today (UTC): {}\n\
         next note written: {}{}{}",
        status.linked,
        status.parked,
        status.unmatched,
        status.to_look_up,
        status.notes_live,
        status.notes_sealed,
        status.uncertain,
        status.dirty,
        status.tokens_today,
        next.unwrap_or_else(|| "nothing waiting".to_owned()),
        status.stopped.as_ref().map_or_else(String::new, |why| format!(
            "\nSTOPPED for today: {why}; messages wait in the hub and are written after Pipedrive's midnight (UTC)"
        )),
        status.trouble.as_ref().map_or_else(String::new, |why| format!(
            "\nCANNOT WRITE: {why}; messages wait in the hub"
        )),
    ));
}
