//! `daytona-sim [PORT] [API_KEY]`: a Daytona-shaped simulator on 127.0.0.1 for the demo.
//! Prints the API base (the plugin's `api_base`) and the toolbox proxy base, then serves
//! until killed.

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().map(|p| p.parse().expect("PORT must be a number")).unwrap_or(0);
    let key = args.next().unwrap_or_else(|| "dtn_sim_key".into());
    let sim = provider_sims::daytona::DaytonaSim::start(port, &key).await?;
    println!("api {}", sim.api_base());
    println!("toolbox {}/toolbox", sim.sim.base_url());
    std::future::pending::<()>().await;
    Ok(())
}
