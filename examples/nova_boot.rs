//! Boot a test server, wait until it is ACTIVE, optionally give it a floating IP, print its
//! addresses and the tail of its console log, then delete everything it created — also when
//! something fails and on Ctrl-C.
//!
//! ```text
//! cargo run -p imagekit-examples --example nova_boot -- --cloud prod \
//!     --image "CC7 TEST - x86_64 [2026-11-24]" --flavor m1.small --network private \
//!     --floating-network public --key-name releasebot --json
//! ```
//!
//! Exit status: 0 booted (and cleaned up), 1 failed (cleaned up; the message says why), 2 bad arguments.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use openstack_client::nova::{CreateServer, NetworkRef, Networks, ServerId};
use openstack_client::{Client, WaitOptions};
use serde_json::json;

#[derive(Parser, Debug)]
#[command(about = "Boot a server, report on it, and delete everything created")]
struct Args {
    /// Cloud name in clouds.yaml (default: $OS_CLOUD, else the OS_* variables).
    #[arg(long)]
    cloud: Option<String>,
    /// Image name or id.
    #[arg(long)]
    image: String,
    /// Flavor name or id.
    #[arg(long)]
    flavor: String,
    /// Network name or id (repeatable); none means `auto`.
    #[arg(long = "network")]
    networks: Vec<String>,
    /// Allocate a floating IP on this external network and attach it.
    #[arg(long)]
    floating_network: Option<String>,
    /// Keypair to inject.
    #[arg(long)]
    key_name: Option<String>,
    /// Server name.
    #[arg(long, default_value = "imagekit-nova-boot")]
    name: String,
    /// Seconds to wait for ACTIVE.
    #[arg(long, default_value_t = 900)]
    timeout: u64,
    /// Console lines to print.
    #[arg(long, default_value_t = 20)]
    console_lines: u32,
    /// Print one JSON document instead of text.
    #[arg(long)]
    json: bool,
}

/// What this run created, so it can all be deleted.
#[derive(Default)]
struct Created {
    server: Option<ServerId>,
    floating_ip: Option<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut cloud = Client::builder();
    if let Some(name) = &args.cloud {
        cloud = cloud.cloud(name);
    }
    let cloud = match cloud.build() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let created = tokio::sync::Mutex::new(Created::default());
    let outcome = tokio::select! {
        r = boot(&args, &cloud, &created) => r.map_err(|e| e.to_string()),
        _ = tokio::signal::ctrl_c() => Err("interrupted".to_string()),
    };
    let cleanup = cleanup(&cloud, &created.into_inner()).await;
    match (outcome, cleanup) {
        (Ok(report), Ok(())) => {
            if args.json {
                println!("{report}");
            } else {
                print_text(&report);
            }
            ExitCode::SUCCESS
        }
        (Ok(_), Err(e)) => {
            eprintln!("error: booted fine, but cleanup failed: {e}");
            ExitCode::from(1)
        }
        (Err(e), cleanup) => {
            eprintln!("error: {e}");
            if let Err(c) = cleanup {
                eprintln!("error: cleanup failed too: {c}");
            }
            ExitCode::from(1)
        }
    }
}

async fn boot(
    args: &Args,
    cloud: &Client,
    created: &tokio::sync::Mutex<Created>,
) -> openstack_client::Result<serde_json::Value> {
    let nova = cloud.nova();
    let neutron = cloud.neutron();
    let image = match cloud.glance().get(&args.image.as_str().into()).await {
        Ok(i) => i,
        Err(e) if e.is_not_found() => cloud.glance().find_by_name(&args.image).await?,
        Err(e) => return Err(e),
    };
    let flavor = nova.find_flavor(&args.flavor).await?;
    let networks = if args.networks.is_empty() {
        Networks::Auto
    } else {
        Networks::List(args.networks.iter().map(|n| NetworkRef::Name(n.clone())).collect())
    };
    let mut req = CreateServer::new(&args.name, image.id.as_str(), &flavor.id)
        .networks(networks)
        .tag("imagekit");
    if let Some(k) = &args.key_name {
        req = req.key_name(k);
    }
    let server = nova.create_server(&req).await?;
    created.lock().await.server = Some(server.id.clone());
    let wait = WaitOptions::timeout(Duration::from_secs(args.timeout));
    let mut server = nova.wait_for_active(&server.id, &wait).await?;

    if let Some(ext) = &args.floating_network {
        let net = neutron.find_network(ext).await?;
        let port = neutron
            .server_ports(server.id.as_str())
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| openstack_client::Error::InvalidInput("the server has no port for a floating IP".into()))?;
        let fip = neutron
            .create_floating_ip(&net.id, &format!("imagekit nova_boot {}", server.id), Some(&port.id))
            .await?;
        created.lock().await.floating_ip = Some(fip.id.clone());
        server = nova.get_server(&server.id).await?;
    }
    let console = nova
        .console_output(
            &server.id,
            Some(args.console_lines),
            &WaitOptions::timeout(Duration::from_secs(120)),
        )
        .await?;
    Ok(json!({
        "server": server.id,
        "name": server.name,
        "status": server.status,
        "image": image.id,
        "flavor": flavor.name,
        "access_address": server.access_address(),
        "addresses": server.addresses,
        "console_tail": console,
    }))
}

async fn cleanup(cloud: &Client, created: &Created) -> openstack_client::Result<()> {
    let wait = WaitOptions::timeout(Duration::from_secs(300));
    if let Some(fip) = &created.floating_ip {
        cloud.neutron().delete_floating_ip(fip).await?;
    }
    if let Some(id) = &created.server {
        cloud.nova().delete_and_wait(id, &wait).await?;
    }
    Ok(())
}

fn print_text(report: &serde_json::Value) {
    println!(
        "server {} ({}) was {}",
        report["server"], report["name"], report["status"]
    );
    println!("reachable at {}", report["access_address"]);
    println!("console:\n{}", report["console_tail"].as_str().unwrap_or_default());
    println!("(deleted)");
}
