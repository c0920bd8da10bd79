//! Helpers for the tests and benchmarks that run the service's real processes on loopback: child processes
//! that die with the test, free ports, `nats-server`, `s2v-server`'s announced address, request latents and
//! server-sent events.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A child process killed when the test ends, however it ends.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something listens on `port` of loopback.
pub fn wait_for_port(port: u16, timeout: Duration, what: &str) {
    let deadline = Instant::now() + timeout;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Debian's `nats-server` with JetStream, storing in `store`; returns it and its URL.
pub fn start_nats(store: &Path) -> (Process, String) {
    let store = store.to_str().expect("a UTF-8 store path");
    spawn_nats(&["-js", "-sd", store])
}

/// A `nats-server` without JetStream: it takes connections, but no stream can be made on it.
pub fn start_nats_without_jetstream() -> (Process, String) {
    spawn_nats(&[])
}

fn spawn_nats(options: &[&str]) -> (Process, String) {
    let port = free_port();
    let child = Command::new("nats-server")
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .args(options)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server runs (Debian's `nats-server` package; tests/setup installs it)");
    let process = Process(child);
    wait_for_port(port, Duration::from_secs(10), "nats-server");
    (process, format!("nats://127.0.0.1:{port}"))
}

/// Starts `command` (an `s2v-server` with its arguments) on a free port and returns it and its base URL,
/// read from the line the server prints once it listens.
pub fn start_server(mut command: Command) -> (Process, String) {
    let mut child = command
        .args(["--addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("s2v-server starts");
    let stdout = child.stdout.take().unwrap();
    // The server's log is drained all along (a full pipe would stall it) and shown if it fails to start.
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let log = Arc::new(Mutex::new(String::new()));
    let drain = {
        let log = log.clone();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                let mut log = log.lock().unwrap();
                if log.len() < 64 * 1024 {
                    log.push_str(&line);
                    log.push('\n');
                }
            }
        })
    };
    let mut process = Process(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let Some(addr) = line.trim().strip_prefix("listening on ") else {
        // Killing is a no-op for a server that has exited, and keeps a live one from hanging the test.
        let _ = process.0.kill();
        let exited = process.0.wait().ok();
        let _ = drain.join();
        panic!(
            "s2v-server printed {line:?} instead of its address and exited ({exited:?}); it logged:\n{}",
            log.lock().unwrap()
        );
    };
    (process, format!("http://{addr}"))
}

/// A deterministic, non-zero latent of `dim` values.
pub fn latent(seed: u32, dim: usize) -> Vec<f32> {
    (0..dim)
        .map(|i| (((i as u32).wrapping_mul(2_654_435_761) ^ seed) % 1000) as f32 / 1000.0)
        .collect()
}

/// Takes the complete server-sent events off the front of `buffer`: `(event name, data)` of each.
pub fn drain_events(buffer: &mut String) -> Vec<(String, String)> {
    let mut events = Vec::new();
    while let Some(end) = buffer.find("\n\n") {
        let block: String = buffer.drain(..end + 2).collect();
        let (mut name, mut data) = (String::new(), String::new());
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("event:") {
                name = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim());
            }
        }
        if !name.is_empty() {
            events.push((name, data));
        }
    }
    events
}

/// `GET base + path`.
async fn get(client: &reqwest::Client, base: &str, path: &str) -> reqwest::Response {
    client.get(format!("{base}{path}")).send().await.unwrap()
}

/// `GET base + path`, its body as JSON.
pub async fn get_json(client: &reqwest::Client, base: &str, path: &str) -> serde_json::Value {
    get(client, base, path).await.json().await.unwrap()
}

/// `GET base + path`, its body as text.
pub async fn get_text(client: &reqwest::Client, base: &str, path: &str) -> String {
    get(client, base, path).await.text().await.unwrap()
}

/// `GET base + path`, its status.
pub async fn get_status(client: &reqwest::Client, base: &str, path: &str) -> u16 {
    get(client, base, path).await.status().as_u16()
}

/// The server-sent events of a response as `(name, JSON data, when it arrived)`, read to the stream's end;
/// `each` sees every event as it arrives.
pub async fn read_events(
    response: reqwest::Response,
    mut each: impl FnMut(&str, &serde_json::Value),
) -> Vec<(String, serde_json::Value, Instant)> {
    use futures_util::StreamExt;
    let mut stream = response.bytes_stream();
    let mut buffer = String::new();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        buffer.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        for (name, data) in drain_events(&mut buffer) {
            let data: serde_json::Value = serde_json::from_str(&data).unwrap();
            each(&name, &data);
            out.push((name, data, Instant::now()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_taken_whole_and_partial_ones_wait() {
        let mut buffer =
            "event: image\ndata: {\"index\":0}\n\n: keep-alive\n\nevent: done\ndata: {}"
                .to_string();
        assert_eq!(
            drain_events(&mut buffer),
            [("image".to_string(), "{\"index\":0}".to_string())]
        );
        buffer.push_str("\n\n");
        assert_eq!(
            drain_events(&mut buffer),
            [("done".to_string(), "{}".to_string())]
        );
        assert!(buffer.is_empty());
    }
}
