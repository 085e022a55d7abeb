//! Front ends that expose the host's calls to other systems. `iii`: the iii engine
//! (worker registration, the router ids, HTTP triggers, drain and shutdown).

pub mod http;
pub mod iii;
