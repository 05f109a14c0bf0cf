//! The state-store seam: task records, the events stream, pilots, heartbeats and the
//! manager lease. `RedisStore` is the real one (DESIGN section 6); `MemoryStore` keeps the
//! same semantics in process for embedded mode.

mod memory;
mod redis_pool;
mod redis_store;

pub use memory::MemoryStore;
pub use redis_store::{transition_script, RedisStore, CAMPAIGNS_KEY};

use crate::ids::{CampaignId, PilotId, TaskId};
use crate::model::{
    CampaignMeta, Event, PilotLoad, PilotRecord, PilotWait, TaskRecord, Transition,
    TransitionOutcome,
};
use crate::pool::{PoolAgent, PoolCampaign, PoolName};
use crate::state::{CampaignState, PilotState};
use async_trait::async_trait;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot reach Redis at {url}: {reason}. Start it (`deploy/dev/services-up.sh`, or `redis-server --daemonize yes`), or, for `emanager run`, drop --redis-url / EMANAGER_REDIS_URL / `redis_url` in emanager.toml to run in embedded mode")]
    Unreachable { url: String, reason: String },
    #[error("state store operation `{op}` failed: {reason}")]
    Operation { op: &'static str, reason: String },
    #[error("corrupt record in {key}: {reason}")]
    Corrupt { key: String, reason: String },
    #[error(
        "campaign {0} is not known to this state store (was Redis restarted without persistence?)"
    )]
    UnknownCampaign(CampaignId),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Decisions kept per campaign (the oldest are dropped).
pub const DECISIONS_KEPT: usize = 200;
/// The stream of our batch pilots' queue waits (not per campaign: every bundle service reads
/// all of them and keeps those of its resources). Outside `em:bundles:*`, where every key
/// is a site's snapshot.
pub const PILOT_WAITS_KEY: &str = "em:pilot-waits";
/// About this many pilot waits are kept (older ones are trimmed).
pub const PILOT_WAITS_KEPT: usize = 10_000;

/// Heartbeat and registration facts the manager reads about a pilot.
#[derive(Clone, Debug, PartialEq)]
pub struct PilotView {
    pub record: PilotRecord,
    pub alive: bool,
    pub load: PilotLoad,
    /// Age of the last heartbeat in ms (None when none was seen).
    pub heartbeat_age_ms: Option<u64>,
}

#[async_trait]
pub trait StateStore: Send + Sync {
    /// Creates the campaign; `false` if it already exists (nothing is overwritten).
    async fn create_campaign(&self, meta: &CampaignMeta) -> StoreResult<bool>;
    async fn campaign(&self, c: &CampaignId) -> StoreResult<Option<CampaignMeta>>;
    async fn set_campaign_state(&self, c: &CampaignId, state: CampaignState) -> StoreResult<()>;
    async fn list_campaigns(&self) -> StoreResult<Vec<CampaignId>>;

    /// Creates task records that do not exist yet (existing ones are kept as they are).
    async fn insert_tasks(&self, c: &CampaignId, tasks: &[(TaskId, TaskRecord)])
        -> StoreResult<()>;
    /// Applies transitions atomically, each checked for attempt and legality, each appended
    /// to the events stream when applied.
    async fn transition(
        &self,
        c: &CampaignId,
        batch: &[Transition],
    ) -> StoreResult<Vec<TransitionOutcome>>;
    async fn task_records(&self, c: &CampaignId) -> StoreResult<Vec<(TaskId, TaskRecord)>>;
    async fn task_record(&self, c: &CampaignId, t: &TaskId) -> StoreResult<Option<TaskRecord>>;

    /// Creates the consumer group `group` on the events stream (idempotent, from the start).
    async fn ensure_event_group(&self, c: &CampaignId, group: &str) -> StoreResult<()>;
    /// Reads events for `consumer`: first its pending (delivered, unacknowledged) ones, then
    /// new ones, blocking up to `block_ms` when there are none.
    async fn read_events(
        &self,
        c: &CampaignId,
        group: &str,
        consumer: &str,
        count: usize,
        block_ms: u64,
    ) -> StoreResult<Vec<Event>>;
    async fn ack_events(&self, c: &CampaignId, group: &str, ids: &[String]) -> StoreResult<()>;
    /// Every event of the campaign, oldest first (reports, tests).
    async fn all_events(&self, c: &CampaignId) -> StoreResult<Vec<Event>>;

    /// Writes the pilot record (creating or replacing it) and appends a pilot event. A
    /// `submitted_ms` of 0 keeps the recorded one: the agent registering does not know it,
    /// and the manager may record it while the agent registers.
    async fn put_pilot(&self, c: &CampaignId, rec: &PilotRecord) -> StoreResult<()>;
    /// Moves a pilot to `to` if legal; returns whether it moved.
    async fn pilot_transition(
        &self,
        c: &CampaignId,
        p: &PilotId,
        to: PilotState,
        reason: &str,
    ) -> StoreResult<bool>;
    /// Records the batch job id of a submitted pilot and its submission time (now),
    /// touching no other field (its agent may already have registered).
    async fn set_pilot_job(&self, c: &CampaignId, p: &PilotId, job_id: &str) -> StoreResult<()>;
    async fn pilots(&self, c: &CampaignId) -> StoreResult<Vec<PilotView>>;
    /// Refreshes the pilot's alive key for `ttl_ms` and records its load.
    async fn heartbeat(
        &self,
        c: &CampaignId,
        p: &PilotId,
        ttl_ms: u64,
        load: PilotLoad,
    ) -> StoreResult<()>;

    /// Appends a batch pilot's queue wait to the stream the bundle services read
    /// ([`PILOT_WAITS_KEY`]; the newest [`PILOT_WAITS_KEPT`] or so are kept).
    async fn record_pilot_wait(&self, wait: &PilotWait) -> StoreResult<()>;
    /// Up to `count` pilot waits recorded after the entry `after` (`"0"`: from the oldest
    /// kept), oldest first, with their stream ids. Entries that are not pilot waits are
    /// skipped.
    async fn pilot_waits(&self, after: &str, count: usize)
        -> StoreResult<Vec<(String, PilotWait)>>;

    /// Takes or renews the campaign's manager lease for `holder`; `false` if another holds it.
    async fn acquire_lease(&self, c: &CampaignId, holder: &str, ttl_ms: u64) -> StoreResult<bool>;
    async fn release_lease(&self, c: &CampaignId, holder: &str) -> StoreResult<()>;

    /// Appends a decision of the campaign's manager (a pilot added, canceled, replaced, and
    /// why) to the campaign's log, which keeps the last [`DECISIONS_KEPT`].
    async fn add_decision(&self, c: &CampaignId, at_ms: u64, text: &str) -> StoreResult<()>;
    /// The campaign's decisions, oldest first: `(ms since the epoch, text)`.
    async fn decisions(&self, c: &CampaignId) -> StoreResult<Vec<(u64, String)>>;

    /// Removes every key of the campaign.
    async fn delete_campaign(&self, c: &CampaignId) -> StoreResult<()>;

    // Pools (`crate::pool`): the campaigns attached to a pool and the agents serving it.

    /// Attaches campaign `c` to `pool` with `weight` (a later call changes the weight).
    async fn attach_to_pool(&self, pool: &PoolName, c: &CampaignId, weight: f64)
        -> StoreResult<()>;
    /// Detaches campaign `c` from `pool` (nothing happens if it was not attached).
    async fn detach_from_pool(&self, pool: &PoolName, c: &CampaignId) -> StoreResult<()>;
    /// The campaigns attached to `pool`.
    async fn pool_campaigns(&self, pool: &PoolName) -> StoreResult<Vec<PoolCampaign>>;
    /// Writes (creates or replaces) an agent's entry in `pool`; its `beat_ms` is the heartbeat.
    async fn put_pool_agent(&self, pool: &PoolName, agent: &PoolAgent) -> StoreResult<()>;
    /// Removes an agent's entry from `pool`.
    async fn remove_pool_agent(&self, pool: &PoolName, agent: &PilotId) -> StoreResult<()>;
    /// The agents of `pool`, alive or not (see `PoolAgent::alive`).
    async fn pool_agents(&self, pool: &PoolName) -> StoreResult<Vec<PoolAgent>>;
    /// Every pool that has had an agent or a campaign.
    async fn list_pools(&self) -> StoreResult<Vec<PoolName>>;
}
