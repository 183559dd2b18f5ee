//! The process's metrics, in one registry, exposed as Prometheus text at `GET /metrics`:
//! requests by platform and outcome, jobs by operation and end, provider latency and errors,
//! ledger credits by kind, payment webhook events by type and result, deliveries that must be
//! retried and platform rate limits. Queue depth and age are read from the database when
//! scraped. Labels carry only our own names (never input beyond a bounded set, never ids).

use std::sync::LazyLock;

use crate::ledger::{SystemAccount, TransferKind};

use prometheus_client::{
    encoding::text::encode,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

type Labels = Vec<(&'static str, String)>;
type Histograms = Family<Labels, Histogram, fn() -> Histogram>;

/// Every metric.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<Labels, Counter>,
    jobs: Family<Labels, Counter>,
    provider_seconds: Histograms,
    provider_errors: Family<Labels, Counter>,
    ledger_credits: Family<Labels, Counter>,
    webhook_events: Family<Labels, Counter>,
    deliveries: Family<Labels, Counter>,
    rate_limits: Family<Labels, Counter>,
    throttled: Counter,
    queue_depth: Gauge,
    queue_age_seconds: Gauge,
}

fn provider_histogram() -> Histogram {
    // 10 ms to about 5.5 minutes.
    Histogram::new(exponential_buckets(0.01, 2.0, 16))
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut registry = Registry::with_prefix("imagegpt");
    let metrics = Metrics {
        requests: Family::default(),
        jobs: Family::default(),
        provider_seconds: Family::new_with_constructor(provider_histogram),
        provider_errors: Family::default(),
        ledger_credits: Family::default(),
        webhook_events: Family::default(),
        deliveries: Family::default(),
        rate_limits: Family::default(),
        throttled: Counter::default(),
        queue_depth: Gauge::default(),
        queue_age_seconds: Gauge::default(),
        registry: Registry::default(),
    };
    registry.register(
        "requests",
        "Updates and interactions handled, by platform and outcome",
        metrics.requests.clone(),
    );
    registry.register(
        "jobs",
        "Jobs that ended or were put back, by operation and state",
        metrics.jobs.clone(),
    );
    registry.register(
        "provider_seconds",
        "Time a provider took for one generation",
        metrics.provider_seconds.clone(),
    );
    registry.register(
        "provider_errors",
        "Provider failures, by provider and kind",
        metrics.provider_errors.clone(),
    );
    registry.register(
        "ledger_credits",
        "Credits posted through the ledger's system accounts, by kind",
        metrics.ledger_credits.clone(),
    );
    registry.register(
        "webhook_events",
        "Payment webhook events, by type and result",
        metrics.webhook_events.clone(),
    );
    registry.register(
        "deliveries",
        "Results and messages that could not be delivered at once, by platform and result",
        metrics.deliveries.clone(),
    );
    registry.register(
        "rate_limits",
        "429 answers from chat platforms, by platform",
        metrics.rate_limits.clone(),
    );
    registry.register(
        "throttled_requests",
        "Requests refused or ignored because their sender went over the per-person limit",
        metrics.throttled.clone(),
    );
    registry.register(
        "queue_depth",
        "Jobs waiting to run",
        metrics.queue_depth.clone(),
    );
    registry.register(
        "queue_age_seconds",
        "Age of the oldest job waiting to run",
        metrics.queue_age_seconds.clone(),
    );
    Metrics {
        registry,
        ..metrics
    }
});

/// The metrics of this process.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    /// One request from `platform` handled with `outcome` (`answered`, `silent`, `error`,
    /// `rejected`, …).
    pub fn request(&self, platform: &str, outcome: &'static str) {
        self.requests
            .get_or_create(&vec![
                ("platform", platform.to_string()),
                ("outcome", outcome.to_string()),
            ])
            .inc();
    }

    /// A job reached `state` (`succeeded`, `failed`, `cancelled`, `retry`).
    pub fn job(&self, operation: &str, state: &str) {
        self.jobs
            .get_or_create(&vec![
                ("operation", operation.to_string()),
                ("state", state.to_string()),
            ])
            .inc();
    }

    /// A provider call took `seconds`.
    pub fn provider_time(&self, provider: &str, seconds: f64) {
        self.provider_seconds
            .get_or_create(&vec![("provider", provider.to_string())])
            .observe(seconds);
    }

    /// A provider call failed with `kind` (`unavailable`, `refused`, `transient`, `timeout`).
    pub fn provider_error(&self, provider: &str, kind: &'static str) {
        self.provider_errors
            .get_or_create(&vec![
                ("provider", provider.to_string()),
                ("kind", kind.to_string()),
            ])
            .inc();
    }

    /// The credits ever posted for `kind`, as the ledger's system accounts total them: the
    /// counter is brought up to `total` (it only grows), so every instance reports the books.
    pub fn credits(&self, kind: &str, total: u64) {
        let counter = self
            .ledger_credits
            .get_or_create(&vec![("kind", kind.to_string())]);
        let now = counter.get();
        if total > now {
            counter.inc_by(total - now);
        }
    }

    /// A payment webhook event of `event_type` ended with `result`.
    pub fn webhook(&self, event_type: &str, result: &'static str) {
        // Stripe's types are a bounded set of names; anything odd is not a label.
        let event_type = if event_type.len() <= 64
            && event_type
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '.' || c == '_')
        {
            event_type.to_string()
        } else {
            "other".to_string()
        };
        self.webhook_events
            .get_or_create(&vec![("type", event_type), ("result", result.to_string())])
            .inc();
    }

    /// A delivery to `platform` ended with `result` (`retry`, `failed`).
    pub fn delivery(&self, platform: &str, result: &'static str) {
        self.deliveries
            .get_or_create(&vec![
                ("platform", platform.to_string()),
                ("result", result.to_string()),
            ])
            .inc();
    }

    /// `platform` answered 429.
    pub fn rate_limited(&self, platform: &'static str) {
        self.rate_limits
            .get_or_create(&vec![("platform", platform.to_string())])
            .inc();
    }

    /// A request turned away by the per-person limit.
    pub fn throttled(&self) {
        self.throttled.inc();
    }

    /// The queue as last read from the database.
    pub fn queue(&self, depth: i64, oldest_age_seconds: i64) {
        self.queue_depth.set(depth);
        self.queue_age_seconds.set(oldest_age_seconds);
    }

    /// Reads what the database knows at a scrape: the queue, and the credits the system
    /// accounts have posted (they are the ledger's own running totals, so nothing is counted
    /// on the hot path and a rolled-back transaction never counts).
    pub async fn refresh(&self, store: &crate::Store) {
        if let Ok((depth, age)) = store.queue_stats().await {
            self.queue(depth, age);
        }
        let read = |account: SystemAccount| async move {
            store.account_balance(store.account(account)).await.ok()
        };
        let (Some(cards), Some(stars), Some(grants), Some(revenue), Some(refunds)) = (
            read(SystemAccount::CardSales).await,
            read(SystemAccount::StarsSales).await,
            read(SystemAccount::Grants).await,
            read(SystemAccount::GenerationRevenue).await,
            read(SystemAccount::Refunds).await,
        ) else {
            return;
        };
        for (kind, total) in [
            (
                TransferKind::Purchase,
                cards.debits_posted.get() + stars.debits_posted.get(),
            ),
            (TransferKind::Grant, grants.debits_posted.get()),
            (TransferKind::Adjustment, grants.credits_posted.get()),
            (TransferKind::Generation, revenue.credits_posted.get()),
            (TransferKind::Refund, refunds.credits_posted.get()),
        ] {
            self.credits(kind.as_str(), total);
        }
    }

    /// Everything, in Prometheus text format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_show_in_the_text_format() {
        let m = metrics();
        m.job("image", "succeeded");
        m.webhook("checkout.session.completed", "applied");
        m.webhook("<script>", "rejected");
        m.provider_time("local", 0.2);
        let text = m.render();
        assert!(
            text.contains("imagegpt_jobs_total{operation=\"image\",state=\"succeeded\"}"),
            "{text}"
        );
        assert!(text.contains("type=\"other\""), "{text}");
        assert!(text.contains("imagegpt_provider_seconds_bucket"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }
}
