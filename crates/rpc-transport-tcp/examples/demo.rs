//! The moolib `Rpc` example, in Rust, as two processes over TCP.
//!
//! A host named `host` defines `bar`, which prints its argument and returns
//! 42. A client connects, calls `host::bar("hello world")` and prints the
//! result. The output is:
//!
//! ```text
//! hello world
//! 42
//! ```
//!
//! Run both at once (this process starts the host and the client as child
//! processes):
//!
//! ```text
//! cargo run -p rpc-transport-tcp --example demo
//! ```
//!
//! or each by hand, in two terminals:
//!
//! ```text
//! cargo run -p rpc-transport-tcp --example demo -- host 127.0.0.1:1234
//! cargo run -p rpc-transport-tcp --example demo -- client 127.0.0.1:1234
//! ```

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use rpc_core::Rpc;
use rpc_transport_tcp::TcpTransport;

/// What the host prints on stderr once it listens, followed by its address.
const READY: &str = "host listening on ";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] => both(),
        ["host", addr] => host(addr),
        ["client", addr] => client(addr),
        _ => bail!("usage: demo [host ADDR | client ADDR]"),
    }
}

/// Starts the host, waits until it listens, then runs the client against it.
fn both() -> anyhow::Result<()> {
    let me = std::env::current_exe().context("finding this program")?;
    let mut host = Command::new(&me)
        .args(["host", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .spawn()
        .context("starting the host")?;
    let stderr = host.stderr.take().context("host stderr")?;
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines.next().context("the host exited before listening")??;
        if let Some(addr) = line.strip_prefix(READY) {
            break addr.to_owned();
        }
        eprintln!("{line}");
    };
    // Keep forwarding the host's diagnostics.
    std::thread::spawn(move || lines.map_while(Result::ok).for_each(|l| eprintln!("{l}")));

    let client = Command::new(&me)
        .args(["client", &addr])
        .status()
        .context("running the client")?;
    let host_status = host.wait().context("waiting for the host")?;
    if !client.success() || !host_status.success() {
        bail!("client: {client}, host: {host_status}");
    }
    Ok(())
}

#[tokio::main]
async fn host(addr: &str) -> anyhow::Result<()> {
    let host = Rpc::new();
    host.set_name("host")?;
    host.add_transport(TcpTransport::default());
    host.define("bar", |s: String| async move {
        println!("{s}");
        Ok(42)
    })?;
    // The client stops the host when it is done.
    host.enable_remote_shutdown(true);
    let bound = host.listen(addr).await?;
    eprintln!("{READY}{bound}");
    host.wait_for_shutdown().await;
    Ok(())
}

#[tokio::main]
async fn client(addr: &str) -> anyhow::Result<()> {
    let client = Rpc::new();
    client.add_transport(TcpTransport::default());
    client.connect(addr)?;
    // The call waits for the connection to come up.
    let answer: i32 = client.call("host", "bar", "hello world").await?;
    println!("{answer}");
    client.shutdown_peer("host").await?;
    if std::env::var_os("DEMO_DEBUG").is_some() {
        eprintln!("{}", client.debug_info());
    }
    Ok(())
}
