//! The webhook sender's counters, in every build (the metrics endpoint
//! reads them whether or not this build can send webhooks).

use std::sync::atomic::AtomicU64;

/// Process-wide delivery counters, read by the metrics endpoint.
#[derive(Debug, Default)]
pub struct DeliveryStats {
    /// Requests answered with a 2xx.
    pub deliveries: AtomicU64,
    /// Attempts that failed and were tried again.
    pub retries: AtomicU64,
    /// Batches given up after `retry_for`.
    pub failures: AtomicU64,
    /// Events dropped because the sender's queue was full.
    pub dropped: AtomicU64,
    /// Events accepted but not yet delivered or given up.
    pub pending: AtomicU64,
    /// Events dropped, oldest first, because their webhook's backlog was
    /// at `max_queued_events`.
    pub dropped_oldest: AtomicU64,
    /// Events waiting in the webhooks' backlogs (all lanes together).
    pub queued: AtomicU64,
}
