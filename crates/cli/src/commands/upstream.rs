//! Building the relay from `--upstream` / `--oauth` flags, and the `Delivery` every command
//! hands its Channels operations to (`crate::runtime` puts them together).

use anyhow::{Result, anyhow};
use pdchannels_client::oauth::{OAuthSession, TokenFile};
use pdchannels_client::{ChannelsClient, Credentials};
use pdchannels_relay::{Delivery, Relay, RelayConfig, RelayedChannels};
use pdchannels_store::Store;

use crate::args::UpstreamArgs;
use crate::{paths, secrets};

/// The relay for `args`, if an upstream is configured.
pub fn relay(store: &Store, args: &UpstreamArgs) -> Result<Option<Relay>> {
    let Some((base, credentials)) = destination(args)? else {
        return Ok(None);
    };
    let mut builder = ChannelsClient::builder(base);
    if let Some(credentials) = credentials {
        builder = builder.credentials(credentials);
    }
    let client = builder.build().map_err(|e| anyhow!(e))?;
    let config = RelayConfig {
        deliver_timeout: args.deliver_timeout,
        max_attempts: args.max_attempts,
        give_up_after: (!args.give_up_after.is_zero()).then_some(args.give_up_after),
        default_database: paths::default_database().ok(),
        ..RelayConfig::default()
    };
    Ok(Some(Relay::new(store.clone(), client, config)))
}

/// Where to deliver and with what, or `None` to keep everything local.
fn destination(args: &UpstreamArgs) -> Result<Option<(String, Option<Credentials>)>> {
    if args.oauth {
        let file = TokenFile::new(paths::oauth_file(args.oauth_file.oauth_file.as_deref())?);
        let session = OAuthSession::from_file(file)?;
        let base = match &args.upstream {
            Some(upstream) => upstream.clone(),
            None => session.tokens().api_base().ok_or_else(|| {
                anyhow!("the saved login has no api_domain; pass --upstream URL as well")
            })?,
        };
        return Ok(Some((base, Some(Credentials::OAuth(session)))));
    }
    let Some(upstream) = &args.upstream else {
        return Ok(None);
    };
    let token = secrets::UPSTREAM_TOKEN.resolve(
        args.upstream_token.clone(),
        args.upstream_token_file.as_deref(),
    )?;
    Ok(Some((upstream.clone(), token.map(Credentials::ApiToken))))
}

/// The store, or the relay when there is one.
pub fn delivery(store: &Store, relay: Option<&Relay>) -> Delivery {
    match relay {
        Some(relay) => Delivery::Upstream(RelayedChannels::new(relay.clone())),
        None => Delivery::Local(store.clone()),
    }
}
