//! The leaves that only translate: `fs::read`, `fs::write`, `snapshot`, `expose_port`.
//! The host adds nothing but the run, the S-code mapping and the answer's shape.

use super::answer::{answer, mismatch, wall_budget};
use super::{Answered, Call};
use crate::contract::shapes::{reply, PluginReply, Request};
use crate::runtime::invoke;

pub(super) async fn run(call: &Call<'_>, req: Request) -> Answered {
    let plugin = call.plugin;
    let leaf = req.leaf();
    let (outcome, stats) = invoke::run(plugin, &req, wall_budget(plugin, &req)).await;
    let result = answer(plugin, leaf, outcome).and_then(|r| match (&req, r) {
        (Request::Snapshot { .. }, PluginReply::Snapshotted(id)) => Ok(reply::snapshotted(&id)),
        (Request::ExposePort { .. }, PluginReply::Exposed(port)) => Ok(reply::exposed(&port)),
        (Request::FsRead { .. }, PluginReply::Read(bytes)) => Ok(reply::read(&bytes)),
        (Request::FsWrite(w), PluginReply::Written) => Ok(reply::written(&w.path, w.bytes.len())),
        (_, other) => Err(mismatch(&plugin.name, leaf, &other)),
    });
    (result, Some(stats))
}
