//! The template tool: a channel's message templates, for an agent that must answer after the
//! conversation's `reply_by` (free text is refused then) or wants a ready wording. Listed only
//! with a [`LocalHub`](crate::LocalHub).

use pdchannels_apps::{Template, TemplatesError};
use pdchannels_model::Channels;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{ErrorData, tool, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::arguments::Arguments;
use crate::conversation_tools::{channel_not_found, invalid, read, unavailable};
use crate::outcome::{success, tool_failure};
use crate::output_schema::success_or_error;
use crate::server::ChannelsServer;

/// Whose templates.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListTemplates {
    /// The channel's provider_channel_id.
    channel_id: String,
}

/// A channel's templates.
#[derive(Serialize, JsonSchema)]
struct TemplateList {
    success: bool,
    data: Vec<Template>,
}

#[tool_router(router = template_tools, vis = "pub(crate)")]
impl<C: Channels> ChannelsServer<C> {
    /// List a channel's message templates (id, name, content with placeholders such as {{1}},
    /// language). After a conversation's reply_by, send with channels_send_message giving
    /// template_id and the template's text filled in.
    #[tool(
        name = "channels_list_templates",
        annotations(title = "List templates", read_only_hint = true, open_world_hint = true),
        output_schema = success_or_error::<TemplateList>()
    )]
    pub async fn list_templates(
        &self,
        Parameters(args): Parameters<Arguments<ListTemplates>>,
    ) -> Result<CallToolResult, ErrorData> {
        const TOOL: &str = "channels_list_templates";
        let hub = self.local_hub();
        let request: ListTemplates = match read(args.value()) {
            Ok(request) => request,
            Err(problem) => return Ok(invalid(TOOL, problem)),
        };
        let listed = hub
            .templates
            .list(&hub.store, &hub.apps, &request.channel_id)
            .await;
        Ok(match listed {
            Ok(templates) => {
                let summary = format!(
                    "{} template{} for channel `{}`.",
                    templates.len(),
                    if templates.len() == 1 { "" } else { "s" },
                    request.channel_id
                );
                success(
                    &TemplateList {
                        success: true,
                        data: templates,
                    },
                    summary,
                )
            }
            Err(TemplatesError::NotFound(channel)) => channel_not_found(TOOL, &channel),
            Err(TemplatesError::Unavailable(why)) => tool_failure(
                TOOL,
                "NO_TEMPLATES",
                format!("No templates: {why}."),
                "Send free text with channels_send_message while the conversation's reply_by has not passed.".to_owned(),
                &[],
            ),
            Err(TemplatesError::Failed(why)) => tool_failure(
                TOOL,
                "APP_FAILED",
                format!("The channel's app did not give its templates: {why}."),
                "Call again later; `pdchannels app show` says whether the app is paused or refuses the hub.".to_owned(),
                &[],
            ),
            Err(TemplatesError::Store(e)) => unavailable(TOOL, &e),
        })
    }
}
