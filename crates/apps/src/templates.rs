//! getTemplates: the message templates of a channel with `template_support`, asked of its app
//! when someone wants to pick one (a person composing, an agent about to answer after
//! `reply_by`), and kept 10 minutes, as Pipedrive's composer did.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pdchannels_model::manifest::Endpoint;
use pdchannels_store::{Store, StoreError};
use serde::Serialize;
use serde_json::Value;

use crate::call::{Answer, AppClient};
use crate::turns::{Turns, new_turns, take_turn};

/// How long a channel's templates are kept.
const KEEP: Duration = Duration::from_secs(10 * 60);

/// The most channels whose templates are kept at once (the cache's bound).
const MAX_CHANNELS: usize = 10_000;

/// The most templates taken from one answer.
const MAX_TEMPLATES: usize = 500;
/// The longest template id kept (the receive limit on ids).
const MAX_ID_CHARS: usize = 255;
/// The longest template name kept.
const MAX_NAME_CHARS: usize = 255;
/// The longest template language kept.
const MAX_LANGUAGE_CHARS: usize = 35;
/// The longest template text kept (a message's limit).
const MAX_CONTENT_BYTES: usize = 64 * 1024;
/// The most template text taken from one answer.
const MAX_TOTAL_BYTES: usize = 1024 * 1024;

/// One getTemplates call per channel at a time.
static CHANNEL_TURNS: Turns = new_turns();

/// One template, as the app described it. Sent through postMessage like any message.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Template {
    /// Its id at the app.
    pub id: String,
    /// Its name.
    pub name: Option<String>,
    /// Its text (placeholders such as `{{1}}` as the app wrote them).
    pub content: Option<String>,
    /// Its language.
    pub language: Option<String>,
}

/// Why there are no templates to show.
#[derive(Debug, thiserror::Error)]
pub enum TemplatesError {
    /// No such channel.
    #[error("no channel has the id {0:?}")]
    NotFound(String),
    /// The channel cannot have templates: `why`.
    #[error("{0}")]
    Unavailable(String),
    /// The app refused or could not be reached.
    #[error("the app did not give the templates: {0}")]
    Failed(String),
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Each channel's templates, with when they were asked for.
type Kept = HashMap<String, (Instant, Vec<Template>)>;

/// The templates of each channel, kept 10 minutes. Clones share one cache.
#[derive(Clone, Default)]
pub struct Templates {
    kept: Arc<Mutex<Kept>>,
}

impl Templates {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The templates of `channel_id`: kept ones if asked within 10 minutes, else the app's.
    pub async fn list(
        &self,
        store: &Store,
        client: &AppClient,
        channel_id: &str,
    ) -> Result<Vec<Template>, TemplatesError> {
        let Some(supported) = store.channel_template_support(channel_id).await? else {
            return Err(TemplatesError::NotFound(channel_id.to_owned()));
        };
        if !supported {
            return Err(TemplatesError::Unavailable(format!(
                "the channel {channel_id} was added without template_support, so it has no templates"
            )));
        }
        if let Some(kept) = self.kept(channel_id) {
            return Ok(kept);
        }
        let Some(name) = store.channel_app(channel_id).await? else {
            return Err(TemplatesError::Unavailable(format!(
                "the channel {channel_id} belongs to no app, and templates come from its app; link one with `pdchannels channels link {channel_id} APP`"
            )));
        };
        let Some(app) = store.app_credentials(&name).await? else {
            return Err(TemplatesError::Unavailable(format!(
                "the app {name} is gone"
            )));
        };
        // One call per channel at a time: readers arriving meanwhile take its answer.
        let _turn = take_turn(&CHANNEL_TURNS, channel_id).await;
        if let Some(kept) = self.kept(channel_id) {
            return Ok(kept);
        }
        crate::call::callable(&app).map_err(TemplatesError::Failed)?;
        let called = client
            .get(
                &app,
                Endpoint::GetTemplates,
                &[("providerChannelId", channel_id)],
                &[],
            )
            .await
            .ok_or_else(|| {
                TemplatesError::Unavailable(format!(
                    "the app {name} has no getTemplates in its manifest"
                ))
            })?;
        let templates = match called.answer {
            Answer::Data(data) => read_templates(&data),
            Answer::Refused(r) => {
                crate::call::remember_refusal(store, &name, &r).await?;
                return Err(TemplatesError::Failed(r.describe()));
            }
            Answer::Failed(why) => return Err(TemplatesError::Failed(why)),
        };
        self.keep(channel_id, templates.clone());
        Ok(templates)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.kept
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn kept(&self, channel_id: &str) -> Option<Vec<Template>> {
        let kept = self.lock();
        let (at, templates) = kept.get(channel_id)?;
        (at.elapsed() < KEEP).then(|| templates.clone())
    }

    fn keep(&self, channel_id: &str, templates: Vec<Template>) {
        let mut kept = self.lock();
        if kept.len() >= MAX_CHANNELS {
            kept.retain(|_, (at, _)| at.elapsed() < KEEP);
            if kept.len() >= MAX_CHANNELS {
                kept.clear();
            }
        }
        kept.insert(channel_id.to_owned(), (Instant::now(), templates));
    }
}

/// The templates of an answer, read leniently: `{templates: [...]}` (documented), a bare list,
/// ids as strings or numbers. Held to limits, as a message is: an entry without a usable id
/// (empty, too long, control characters, seen before) is left out, a name or language is cut,
/// a text over 64 KiB leaves its template out, and at most 500 templates (1 MiB of text) are
/// taken.
pub fn read_templates(data: &Value) -> Vec<Template> {
    let list = data
        .get("templates")
        .and_then(Value::as_array)
        .or_else(|| data.as_array());
    let mut seen = std::collections::HashSet::new();
    let mut total = 0usize;
    let mut templates = Vec::new();
    for t in list.into_iter().flatten() {
        if templates.len() >= MAX_TEMPLATES {
            break;
        }
        let id = match t.get("id") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => continue,
        };
        if id.is_empty() || id.chars().count() > MAX_ID_CHARS || id.chars().any(char::is_control) {
            continue;
        }
        let content = t.get("content").and_then(Value::as_str).map(str::to_owned);
        let size = content.as_ref().map_or(0, String::len);
        if size > MAX_CONTENT_BYTES || total + size > MAX_TOTAL_BYTES || !seen.insert(id.clone()) {
            continue;
        }
        total += size;
        templates.push(Template {
            id,
            name: short_text(t, "name", MAX_NAME_CHARS),
            content,
            language: short_text(t, "language", MAX_LANGUAGE_CHARS),
        });
    }
    templates
}

/// A short field, control characters dropped and cut to `max` characters.
fn short_text(t: &Value, key: &str, max: usize) -> Option<String> {
    let text: String = t
        .get(key)?
        .as_str()?
        .chars()
        .filter(|c| !c.is_control())
        .take(max)
        .collect();
    (!text.trim().is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn templates_are_read_leniently() {
        let answer = json!({"templates": [
            {"id": "t1", "name": "Welcome", "content": "Hi {{1}}", "language": "en"},
            {"id": 7, "name": 3},
            {"name": "no id"},
            "junk",
        ]});
        let templates = read_templates(&answer);
        assert_eq!(templates.len(), 2);
        assert_eq!(templates[0].content.as_deref(), Some("Hi {{1}}"));
        assert_eq!(templates[1].id, "7");
        assert_eq!(templates[1].name, None);
        assert_eq!(read_templates(&json!([{"id": "x"}])).len(), 1);
        assert!(read_templates(&json!("nothing")).is_empty());
    }
}
