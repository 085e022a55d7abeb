//! `morph-sim [PORT] [API_KEY]`: a Morph-Cloud-shaped simulator on 127.0.0.1 for the demo.
//! Prints the API base (`…/api`, the plugin's `api_base`), then serves until killed.

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().map(|p| p.parse().expect("PORT must be a number")).unwrap_or(0);
    let key = args.next().unwrap_or_else(|| "morph_sim_key".into());
    let sim = provider_sims::morph::MorphSim::start(port, &key).await?;
    println!("api {}", sim.api_base());
    println!("snapshots {}", provider_sims::morph::BASE_SNAPSHOTS.map(|(id, _)| id).join(" "));
    std::future::pending::<()>().await;
    Ok(())
}
