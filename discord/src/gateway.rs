//! Gateway mode: serenity keeps the websocket (identify, heartbeats, resume, reconnect) and hands
//! each `INTERACTION_CREATE` over; it is written back to Discord's JSON and read by the same
//! translation as the HTTP endpoint. The acknowledgement goes over REST.

use serenity::{
    all::{Context, EventHandler, GatewayIntents, Interaction as SerenityInteraction},
    async_trait,
};
use tokio_util::sync::CancellationToken;

use crate::{adapter::Handler, model::Interaction};

/// Reads a gateway interaction as serenity parsed it into the adapter's model.
///
/// # Errors
///
/// When serenity's value does not read back (a field the adapter needs is missing).
pub fn from_gateway(interaction: &SerenityInteraction) -> Result<Interaction, serde_json::Error> {
    let mut value = serde_json::to_value(interaction)?;
    // serenity keeps the type in its enum, not in the inner value it writes.
    value["type"] = serde_json::json!(u8::from(interaction.kind()));
    serde_json::from_value(value)
}

struct Events {
    handler: Handler,
}

#[async_trait]
impl EventHandler for Events {
    async fn interaction_create(&self, _ctx: Context, interaction: SerenityInteraction) {
        let interaction = match from_gateway(&interaction) {
            Ok(interaction) => interaction,
            Err(error) => {
                tracing::warn!(%error, "unreadable gateway interaction");
                return;
            }
        };
        let (ack, pending) = self.handler.begin(&interaction).await;
        if let Err(error) = self
            .handler
            .messenger()
            .acknowledge(&interaction.id, &interaction.token, &ack)
            .await
        {
            tracing::warn!(interaction = %interaction.id, %error, "acknowledging failed");
            return;
        }
        self.handler.proceed(pending);
    }
}

/// Runs the gateway until `shutdown`.
pub async fn run(
    handler: Handler,
    token: &str,
    api_url: &str,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut builder = serenity::http::HttpBuilder::new(token);
    if api_url.trim_end_matches('/') != "https://discord.com" {
        // serenity sends to another base only with its own rate limiter off; ours is in `Rest`.
        builder = builder.proxy(api_url).ratelimiter_disabled(true);
    }
    // Interactions need no intents.
    let mut client =
        serenity::client::ClientBuilder::new_with_http(builder.build(), GatewayIntents::empty())
            .event_handler(Events { handler })
            .await?;
    let shards = client.shard_manager.clone();
    tokio::spawn(async move {
        shutdown.cancelled().await;
        shards.shutdown_all().await;
    });
    client.start().await?;
    Ok(())
}
