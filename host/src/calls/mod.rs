//! Call semantics every provider gets from the host, once (docs/contract.md "What the
//! host guarantees"), one file per leaf family above the pure `contract/` (shapes,
//! validation, codes): `create` (create, branch), `stop` (stop, pause, resume), `list`
//! (list, get), `exec`, `files` (fs, snapshot, expose_port). Every front end reaches
//! them only through `Host::call`.

pub mod abandoned;
pub mod answer;
pub mod create;
pub mod events;
pub mod exec;
pub mod files;
pub mod keepalive;
pub mod list;
pub mod stop;

use crate::contract::codes::CallError;
use crate::contract::shapes::Request;
use crate::plugin::LoadedPlugin;
use crate::policy::concurrency::Book;
use crate::runtime::invoke::CallStats;
use crate::runtime::output::OutputTap;
use abandoned::Settlements;
use events::Events;
use keepalive::KeepAlive;
use serde_json::Value;
use std::sync::Arc;

/// What one call runs against: the plugin, its slot book (in-process or shared through
/// iii state: `policy/concurrency.rs`), and the host's settlement
/// tasks, event channel and idle-lifetime keeper.
pub struct Call<'a> {
    pub plugin: &'a Arc<LoadedPlugin>,
    pub book: &'a Arc<dyn Book>,
    pub settling: &'a Arc<Settlements>,
    pub events: &'a Events,
    pub keepalive: &'a Arc<KeepAlive>,
}

/// What a call answered, and what the host learnt running it (`None`: it never ran).
pub type Answered = (Result<Value, CallError>, Option<CallStats>);

/// Runs a validated request with the contract's semantics. Capability gating (S404)
/// happened in `Host::call`, before validation, so an absent leaf never answers S422.
/// `tap` receives an exec's output as it is produced.
pub async fn execute(call: &Call<'_>, req: Request, tap: Option<OutputTap>) -> Answered {
    if let Some(refused) = answer::credential_refusal(call.plugin) {
        return (Err(refused), None);
    }
    match req {
        Request::Create(_) => create::create(call, req).await,
        Request::Branch { .. } => create::branch(call, req).await,
        Request::Stop { sandbox_id } => stop::stop(call, &sandbox_id).await,
        Request::Pause { .. } | Request::Resume { .. } => stop::pause_or_resume(call, req).await,
        Request::List => list::list(call).await,
        Request::Get { .. } => list::get(call, req).await,
        Request::SetTimeout { .. } => stop::set_timeout(call, req).await,
        Request::Exec(_) => exec::exec(call, req, tap).await,
        Request::Snapshot { .. } | Request::ExposePort { .. } | Request::FsRead { .. } | Request::FsWrite(_) => {
            call.keepalive.touch(call.plugin, req.sandbox_id().unwrap_or_default(), 0);
            files::run(call, req).await
        }
    }
}
