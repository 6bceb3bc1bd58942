//! A database on another host, simulated: a TCP relay on loopback that holds every
//! chunk for a fixed delay in each direction before passing it on (`--db-delay-ms`).
//! On loopback a round trip costs microseconds, so the number of round trips a request
//! makes to its database hardly shows; across a network each costs the link's latency.
//! Chunks keep their order, and a chunk is held from when it arrived, so statements
//! sent together (pipelined) pay the delay once.

use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Starts a relay to the host and port of `url` (`scheme://[user@]host:port/...`) and
/// returns `url` pointed at the relay instead. The relay runs until the runtime ends.
pub async fn delayed(url: &str, delay: Duration) -> anyhow::Result<String> {
    let (before, host_port, after) = split_authority(url)?;
    let target = host_port.to_owned();
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let relayed = format!("{before}{}{after}", listener.local_addr()?);
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let target = target.clone();
            tokio::spawn(async move {
                if let Ok(server) = TcpStream::connect(&target).await {
                    relay(client, server, delay).await;
                }
            });
        }
    });
    Ok(relayed)
}

/// `url` as (everything before the host, `host:port`, everything after it).
fn split_authority(url: &str) -> anyhow::Result<(&str, &str, &str)> {
    let scheme_end = url.find("://").context("the database URL has no scheme")? + 3;
    let authority_end = url[scheme_end..]
        .find('/')
        .map_or(url.len(), |at| scheme_end + at);
    let host_start = url[scheme_end..authority_end]
        .rfind('@')
        .map_or(scheme_end, |at| scheme_end + at + 1);
    let host_port = &url[host_start..authority_end];
    anyhow::ensure!(
        host_port.contains(':'),
        "the database URL names no port to relay to: {host_port}"
    );
    Ok((&url[..host_start], host_port, &url[authority_end..]))
}

async fn relay(client: TcpStream, server: TcpStream, delay: Duration) {
    let _ = (client.set_nodelay(true), server.set_nodelay(true));
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::join!(
        one_way(client_read, server_write, delay),
        one_way(server_read, client_write, delay)
    );
}

/// Reads chunks as they come and writes each `delay` after it arrived, in order.
async fn one_way(
    mut from: impl AsyncReadExt + Unpin,
    mut to: impl AsyncWriteExt + Unpin,
    delay: Duration,
) {
    let (held, mut due) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reading = async move {
        let mut buffer = vec![0; 64 * 1024];
        while let Ok(read @ 1..) = from.read(&mut buffer).await {
            if held
                .send((Instant::now() + delay, buffer[..read].to_vec()))
                .is_err()
            {
                break;
            }
        }
    };
    let writing = async move {
        while let Some((at, chunk)) = due.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reading, writing);
}
