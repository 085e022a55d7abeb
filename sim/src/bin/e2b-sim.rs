//! `e2b-sim [PORT] [API_KEY]`: an E2B-shaped simulator on 127.0.0.1 for the demo.
//! Prints both base URLs (control plane on PORT, envd on PORT+1), then serves until killed.

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().map(|p| p.parse().expect("PORT must be a number")).unwrap_or(0);
    let key = args.next().unwrap_or_else(|| "e2b_sim_key".into());
    let sim = provider_sims::e2b::E2bSim::start(port, &key).await?;
    println!("api {}", sim.api.base_url());
    println!("envd {}", sim.envd.base_url());
    std::future::pending::<()>().await;
    Ok(())
}
