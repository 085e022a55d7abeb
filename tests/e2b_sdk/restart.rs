//! Ownership and envd tokens live where the sandbox lives (its upstream metadata and an
//! HMAC of its id), so a host restart loses neither: the new host shows the sandbox to
//! its owner only, with the same token, and envd accepts that token.

use super::raw::request;
use super::{key, ALICE, BOB};
use provider_sims::morph::MorphSim;
use sandbox_host::e2b_api::{E2bApi, Settings};
use sandbox_tests::upstream::SECRET;
use sandbox_tests::{PluginSetup, TestHost};

async fn facade(sim: &MorphSim) -> (TestHost, String, tokio::sync::watch::Sender<bool>) {
    let h = TestHost::start(vec![PluginSetup::new("morph", sim.policy_toml())], &[("MORPH_API_KEY", SECRET)]).await;
    let settings = Settings { keys: vec![key("alice", ALICE), key("bob", BOB)], ..Settings::default() };
    let api = E2bApi::new(h.host.clone(), settings).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(api.serve(listener, stopped));
    (h, addr, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_host_still_knows_who_owns_each_sandbox_and_its_token() {
    let sim = MorphSim::start(0, SECRET).await.unwrap();
    let (first, addr, stop) = facade(&sim).await;
    let body = br#"{"templateID":"morph/snapshot_base","metadata":{"team":"red"}}"#;
    let created = request(&addr, "POST", "/v2/sandboxes", &[("X-API-KEY", ALICE), ("Content-Type", "application/json")], body).await;
    assert_eq!(created.status, 201, "{}", String::from_utf8_lossy(&created.body));
    let created = created.json();
    let (id, token) = (created["sandboxID"].as_str().unwrap().to_string(), created["envdAccessToken"].as_str().unwrap().to_string());
    let _ = stop.send(true);
    drop(first);

    let (_second, addr, _stop) = facade(&sim).await;
    let detail = request(&addr, "GET", &format!("/sandboxes/{id}"), &[("X-API-KEY", ALICE)], b"").await;
    assert_eq!(detail.status, 200);
    let detail = detail.json();
    assert_eq!(detail["envdAccessToken"], token.as_str(), "the same token after the restart");
    assert_eq!(detail["templateID"], "morph/snapshot_base");
    assert_eq!(detail["metadata"], serde_json::json!({"team": "red"}), "the API's own entries are not shown");
    assert_eq!(request(&addr, "GET", &format!("/sandboxes/{id}"), &[("X-API-KEY", BOB)], b"").await.status, 404);
    let bobs = request(&addr, "GET", "/v2/sandboxes", &[("X-API-KEY", BOB)], b"").await;
    assert_eq!((bobs.status, bobs.json()), (200, serde_json::json!([])));
    let alices = request(&addr, "GET", "/v2/sandboxes", &[("X-API-KEY", ALICE)], b"").await.json();
    assert_eq!(alices.as_array().unwrap().len(), 1);

    let headers = [("E2b-Sandbox-Id", id.as_str()), ("X-Access-Token", token.as_str()), ("Content-Type", "application/octet-stream")];
    let wrote = request(&addr, "POST", "/files?path=kept.txt", &headers, b"still here").await;
    assert_eq!(wrote.status, 200, "{}", String::from_utf8_lossy(&wrote.body));
    let read = request(&addr, "GET", "/files?path=kept.txt", &headers[..2], b"").await;
    assert_eq!((read.status, read.body.as_slice()), (200, &b"still here"[..]));
    let forged = [("E2b-Sandbox-Id", id.as_str()), ("X-Access-Token", "00112233445566778899aabbccddeeff")];
    assert_eq!(request(&addr, "GET", "/files?path=kept.txt", &forged, b"").await.status, 401, "a forged token is refused");

    assert_eq!(request(&addr, "DELETE", &format!("/sandboxes/{id}"), &[("X-API-KEY", BOB)], b"").await.status, 404);
    assert_eq!(request(&addr, "DELETE", &format!("/sandboxes/{id}"), &[("X-API-KEY", ALICE)], b"").await.status, 204);
    assert_eq!(request(&addr, "DELETE", &format!("/sandboxes/{id}"), &[("X-API-KEY", ALICE)], b"").await.status, 404);
    assert_eq!(sim.live_count(), 0);
}
