//! deleteChannelById: when a person deletes a channel in the hub (not when its app did), the
//! app hears of it, if its manifest has the URL. The hub deletes the channel whatever the app
//! answers: an app that cannot (Pipedrive's example app lists the URL and has no route for it)
//! must not keep a person from deleting a channel.

use pdchannels_model::manifest::Endpoint;
use pdchannels_store::{Store, StoreError};

use crate::call::{Answer, AppClient};

/// What the channel's app made of being told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppDeletion {
    /// The channel belongs to no app.
    NoApp,
    /// Its app's manifest has no deleteChannelById.
    NotInManifest(String),
    /// The app took it.
    Done(String),
    /// The app answered that it does not do this (404, 405, 501, or a page that is not JSON).
    NotSupported(String),
    /// The app refused, or could not be reached: `why`.
    Failed(String, String),
}

impl AppDeletion {
    /// One line for the person who deleted the channel.
    pub fn describe(&self) -> Option<String> {
        match self {
            Self::NoApp => None,
            Self::NotInManifest(app) => Some(format!(
                "the app {app} has no deleteChannelById in its manifest: it was not told"
            )),
            Self::Done(app) => Some(format!("the app {app} was told (deleteChannelById)")),
            Self::NotSupported(app) => Some(format!(
                "the app {app} does not support deleteChannelById; it was deleted here only"
            )),
            Self::Failed(app, why) => Some(format!(
                "telling the app {app} failed ({why}); it was deleted here only"
            )),
        }
    }
}

/// Tells the app of `channel_id`, if any, that a person deletes the channel. Call it before the
/// channel is deleted locally (which forgets its app); delete it whatever this answers.
pub async fn tell_app_channel_deleted(
    store: &Store,
    client: &AppClient,
    channel_id: &str,
) -> Result<AppDeletion, StoreError> {
    let Some(app) = crate::call::app_of_channel(store, channel_id).await? else {
        return Ok(AppDeletion::NoApp);
    };
    let name = app.name.clone();
    let Some(called) = client
        .get(
            &app,
            Endpoint::DeleteChannelById,
            &[("providerChannelId", channel_id)],
            &[],
        )
        .await
    else {
        return Ok(AppDeletion::NotInManifest(name));
    };
    Ok(match called.answer {
        Answer::Data(_) => AppDeletion::Done(name),
        Answer::Refused(r) if matches!(r.status, 404 | 405 | 501) => {
            AppDeletion::NotSupported(name)
        }
        Answer::Refused(r) => AppDeletion::Failed(name, r.describe()),
        Answer::Failed(why) => AppDeletion::Failed(name, why),
    })
}
