//! A database on another host, simulated: a TCP relay on loopback that holds every
//! chunk for a fixed delay in each direction before passing it on (`--db-delay-ms`).
//! On loopback a round trip costs microseconds, so the number of round trips a request
//! makes to its database hardly shows; across a network each costs the link's latency.
//! Chunks keep their order, and a chunk is held from when it arrived, so statements
//! sent together (pipelined) pay the delay once.

use std::time::Duration;

use anyhow::Context;
use tokio::net::{TcpListener, TcpStream};

/// Starts a relay to the host and port of `url` (`scheme://[user@]host:port/...`) and
/// returns `url` pointed at the relay instead. The relay runs until the runtime ends.
pub async fn delayed(url: &str, delay: Duration) -> anyhow::Result<String> {
    let (before, host_port, after) = split_authority(url)?;
    let target = host_port.to_owned();
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let mut relayed = format!("{before}{}{after}", listener.local_addr()?);
    if relayed.starts_with("mysql://") {
        // MariaDB's client, reaching a server on loopback over TCP, otherwise moves to
        // the server's Unix socket, past the relay.
        relayed.push(if relayed.contains('?') { '&' } else { '?' });
        relayed.push_str("prefer_socket=false");
    }
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

/// Relays on threads of its own, each direction a reader and a writer: the writer
/// sleeps with the operating system's timer (tens of microseconds late), where the
/// runtime's timer counts whole milliseconds and would hold a chunk up to 1 ms longer.
async fn relay(client: TcpStream, server: TcpStream, delay: Duration) {
    let (Ok(client), Ok(server)) = (client.into_std(), server.into_std()) else {
        return;
    };
    let _ = std::thread::Builder::new()
        .name("relay".to_owned())
        .spawn(move || {
            let sockets = [&client, &server];
            for socket in sockets {
                let _ = (socket.set_nonblocking(false), socket.set_nodelay(true));
            }
            std::thread::scope(|scope| {
                scope.spawn(|| one_way(&client, &server, delay));
                one_way(&server, &client, delay);
            });
        });
}

/// Reads chunks from `from` as they come and writes each to `to` `delay` after it
/// arrived, in order; ends `to`'s writing once `from` ends.
fn one_way(from: &std::net::TcpStream, to: &std::net::TcpStream, delay: Duration) {
    use std::io::{Read, Write};
    let (held, due) = std::sync::mpsc::channel::<(std::time::Instant, Vec<u8>)>();
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let mut to = to;
            while let Ok((at, chunk)) = due.recv() {
                std::thread::sleep(at.saturating_duration_since(std::time::Instant::now()));
                if to.write_all(&chunk).is_err() {
                    break;
                }
            }
            let _ = to.shutdown(std::net::Shutdown::Write);
        });
        let mut from = from;
        let mut buffer = vec![0; 64 * 1024];
        while let Ok(read @ 1..) = from.read(&mut buffer) {
            let arrived = std::time::Instant::now();
            if held
                .send((arrived + delay, buffer[..read].to_vec()))
                .is_err()
            {
                break;
            }
        }
        drop(held);
    });
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};

    /// Each chunk is held at least the delay each way, in order and whole; the
    /// figures (how much longer) are printed, not asserted.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_round_trip_through_the_relay_takes_the_delay_each_way() {
        let echo = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("postgres://u@{}/db", echo.local_addr().unwrap());
        std::thread::spawn(move || {
            let (mut socket, _) = echo.accept().unwrap();
            let mut buffer = [0; 64];
            while let Ok(read @ 1..) = socket.read(&mut buffer) {
                socket.write_all(&buffer[..read]).unwrap();
            }
        });
        let delay = Duration::from_millis(1);
        let relayed = super::delayed(&url, delay).await.unwrap();
        let address = relayed["postgres://u@".len()..relayed.len() - "/db".len()].to_owned();
        let trips = tokio::task::spawn_blocking(move || {
            let mut socket = std::net::TcpStream::connect(address).unwrap();
            socket.set_nodelay(true).unwrap();
            (0..200u8)
                .map(|n| {
                    let started = Instant::now();
                    socket.write_all(&[n; 8]).unwrap();
                    let mut answer = [0; 8];
                    socket.read_exact(&mut answer).unwrap();
                    assert_eq!(answer, [n; 8]);
                    started.elapsed()
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap();
        assert!(trips.iter().all(|trip| *trip >= 2 * delay), "{trips:?}");
        let mut over: Vec<_> = trips.iter().map(|trip| *trip - 2 * delay).collect();
        over.sort();
        println!(
            "a round trip beyond twice the delay: median {:?}, p99 {:?}, most {:?}",
            over[100], over[198], over[199]
        );
    }
}
