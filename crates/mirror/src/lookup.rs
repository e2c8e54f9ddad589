//! Linking a conversation to the Pipedrive person it belongs to, and to that person's open deal
//! or lead (research §2.3): the customer's id is a phone number (WhatsApp ids are) or an e-mail
//! address; one exact-match person search finds who has it; one person is linked, several are
//! parked with their candidates for a person to choose (`pdchannels mirror pending`), none is
//! parked as unmatched. A manual link is never replaced. A parked or unmatched conversation
//! whose customer writes again a day or more after the look-up is looked up again (the worker's
//! `relook_after`): they may have been added to Pipedrive meanwhile.
//!
//! Cost per conversation: 20 tokens (the search), plus 10 for the person's open deals, plus 20
//! for their leads when there is no open deal. A customer id that is neither a number nor an
//! address costs nothing.

use pdchannels_store::{MirrorConversation, MirrorMatch, MirrorTarget, Store};
use serde_json::json;

use crate::budget::Call;
use crate::matching::{Decision, PhoneRules, decide, identify, search_query};
use crate::pipedrive::{Error, PipedriveClient};
use crate::source::People;

/// What became of one look-up.
#[derive(Debug)]
pub enum Looked {
    /// Recorded (linked, parked or unmatched).
    Recorded,
    /// The budget has no room for it now: left for later.
    NoBudget,
}

/// Why a look-up stopped.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] pdchannels_store::StoreError),
    /// Pipedrive did not answer as needed.
    #[error(transparent)]
    Pipedrive(#[from] Error),
}

/// Looks up one conversation and records what was found.
pub async fn look_up(
    store: &Store,
    client: &PipedriveClient,
    rules: PhoneRules<'_>,
    allows: impl Fn(Call) -> bool,
    conversation: &MirrorConversation,
) -> Result<Looked, LookupError> {
    let (channel_id, conversation_id) = (
        conversation.channel_id.as_str(),
        conversation.conversation_id.as_str(),
    );
    let people = People::read(store, channel_id, conversation_id).await?;
    let identity = people.customer().and_then(|p| identify(&p.id, rules));
    let Some(identity) = identity else {
        store
            .mirror_record_match(channel_id, conversation_id, MirrorMatch::Unmatched)
            .await?;
        return Ok(Looked::Recorded);
    };
    if !allows(Call::PersonsSearch) {
        return Ok(Looked::NoBudget);
    }
    let hits = client.search_persons(&search_query(&identity), 10).await?;
    let found = match decide(&identity, &hits, rules) {
        Decision::Linked(person) => {
            if !allows(Call::Deals) || !allows(Call::Leads) {
                return Ok(Looked::NoBudget);
            }
            let mut target = MirrorTarget {
                person_id: person.person_id,
                org_id: person.org_id,
                ..MirrorTarget::default()
            };
            // The most recently updated open deal; else the most recent lead; else the person.
            if let Some(deal) = client.open_deals(person.person_id).await?.first() {
                target.deal_id = Some(deal.id);
            } else if let Some(lead) = client.leads(person.person_id).await?.first() {
                target.lead_id = Some(lead.id.clone());
            }
            MirrorMatch::Linked(target)
        }
        Decision::Ambiguous(candidates) => MirrorMatch::Parked(json!(
            candidates
                .iter()
                .map(|c| json!({
                    "person_id": c.person_id,
                    "name": c.name,
                    "org_id": c.org_id,
                    "phones": c.phones,
                    "emails": c.emails,
                }))
                .collect::<Vec<_>>()
        )),
        Decision::Unmatched => MirrorMatch::Unmatched,
    };
    store
        .mirror_record_match(channel_id, conversation_id, found)
        .await?;
    Ok(Looked::Recorded)
}
