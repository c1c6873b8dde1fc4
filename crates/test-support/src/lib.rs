//! Test helpers shared by the Gatehouse crates. A dev-dependency only: nothing
//! here is fit for production traffic.
//!
//! - [`Origin`]: a programmable mock HTTP origin on `127.0.0.1:0` speaking
//!   HTTP/1.1 and h2c (and both over TLS with [`OriginBuilder::tls`]), with
//!   built-in [`Handler`]s (echo, fixed reply, delay, close without answering,
//!   large streamed body) and a log of the requests it received.
//! - [`tls::TestCerts`]: a throwaway CA and a `localhost`/`127.0.0.1`
//!   certificate written to a temp dir.
//! - [`otlp::OtlpCollector`]: an OTLP trace collector (HTTP/protobuf or
//!   gRPC) that keeps the spans it receives.
//! - [`TcpProxy`]: a fault-injecting TCP forwarder (cut and restore a
//!   server's connections without stopping the shared server).
//! - [`openapi`]: the routes a crate serves against those its OpenAPI
//!   document describes; [`json_schema`]: a real answer against the
//!   schema the document declares for it.
//! - [`wait_for_port`], [`rss_bytes`], [`init_tracing`]: small utilities.

pub mod json_schema;
pub mod openapi;
pub mod origin;
pub mod otlp;
pub mod tcp_proxy;
pub mod tls;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub use origin::{Handler, Origin, OriginBody, OriginBuilder, RecordedRequest, Reply};
pub use tcp_proxy::TcpProxy;
pub use tls::TestCerts;

/// Waits until a TCP connection to `addr` succeeds, or `timeout` passes.
/// Returns whether the port accepted.
pub async fn wait_for_port(addr: SocketAddr, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Resident set size of process `pid` in bytes, from `/proc/<pid>/status`
/// (`VmRSS`). `None` where `/proc` is unavailable or the process is gone.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vm_rss(&status)
}

/// Resident set size of the current process in bytes; see [`rss_bytes`].
pub fn self_rss_bytes() -> Option<u64> {
    rss_bytes(std::process::id())
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut parts = line["VmRSS:".len()..].split_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    let unit = parts.next().unwrap_or("kB");
    let factor = match unit {
        "kB" => 1024,
        "mB" | "MB" => 1024 * 1024,
        _ => 1,
    };
    Some(value * factor)
}

/// Installs a `tracing` subscriber writing to the test harness's captured
/// output, filtered by `RUST_LOG` (default `warn`). Safe to call from every
/// test: only the first call installs anything.
pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vm_rss_from_proc_status() {
        let status = "Name:\tx\nVmPeak:\t  9999 kB\nVmRSS:\t    2048 kB\nThreads:\t1\n";
        assert_eq!(parse_vm_rss(status), Some(2048 * 1024));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
    }

    #[test]
    fn reads_own_rss_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(self_rss_bytes().unwrap() > 0);
        }
    }
}
