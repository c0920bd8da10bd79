//! Helpers for the tests and benchmarks that run the service's real processes on loopback: child processes
//! that die with the test, free ports, `nats-server`, `s2v-server`'s announced address, request latents and
//! server-sent events.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A child process killed when the test ends, however it ends.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `command` and waits up to `timeout` for the line, on its stdout or stderr, in which `announced`
/// finds the address it listens on; returns the process and that address.
///
/// Every service the tests start binds a port of its own choosing (port 0) and says which: a port picked here
/// and handed over could be taken by another test's process in between, and a service that failed to bind
/// it would look started to anyone who merely connects. Both streams are drained all along (a full pipe would
/// stall the process), and what it printed is shown if it exits or stays silent.
pub fn start_announcing(
    mut command: Command,
    what: &str,
    timeout: Duration,
    announced: fn(&str) -> Option<String>,
) -> (Process, String) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what} does not start: {e}"));
    let (lines, received) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    drain_lines(BufReader::new(stdout), lines.clone());
    drain_lines(BufReader::new(stderr), lines);
    let mut process = Process(child);
    let deadline = Instant::now() + timeout;
    let mut log = String::new();
    loop {
        let line = match received.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => line,
            Err(ended) => {
                // Killing is a no-op for a process that has exited, and keeps a live one from hanging the test.
                // Its readers are not joined: a child it left behind could hold its pipes open.
                let _ = process.0.kill();
                let exited = process.0.wait().map(|status| status.to_string());
                let why = match ended {
                    mpsc::RecvTimeoutError::Timeout => format!("no address within {timeout:?}"),
                    mpsc::RecvTimeoutError::Disconnected => "its output ended".to_string(),
                };
                log.extend(received.try_iter().map(|line| line + "\n"));
                panic!(
                    "{what} did not say where it listens ({why}; {}); it printed:\n{log}",
                    exited.unwrap_or_else(|e| format!("cannot wait for it: {e}"))
                );
            }
        };
        if let Some(address) = announced(&line) {
            return (process, address);
        }
        if log.len() < 64 * 1024 {
            log.push_str(&line);
            log.push('\n');
        }
    }
}

/// Sends each line `reader` gives to `lines` until it ends; keeps reading, without sending, once nobody
/// listens any more.
fn drain_lines(reader: impl BufRead + Send + 'static, lines: mpsc::Sender<String>) {
    std::thread::spawn(move || {
        let mut lines = Some(lines);
        for line in reader.lines().map_while(Result::ok) {
            if let Some(sender) = &lines
                && sender.send(line).is_err()
            {
                lines = None;
            }
        }
    });
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
    let mut command = Command::new("nats-server");
    // `-p -1`: a port of its own choosing, which it logs.
    command.args(["-a", "127.0.0.1", "-p", "-1"]).args(options);
    let (process, address) = start_announcing(
        command,
        "nats-server (Debian's `nats-server` package; tests/setup installs it)",
        Duration::from_secs(10),
        |line| after(line, "Listening for client connections on "),
    );
    (process, format!("nats://{address}"))
}

/// Starts `command` (an `s2v-server` with its arguments) on a port of its choosing and returns it and its base
/// URL, read from the line the server prints once it listens.
pub fn start_server(mut command: Command) -> (Process, String) {
    command.args(["--addr", "127.0.0.1:0"]);
    // Its own line on stdout, not something its log might mention.
    let (process, address) =
        start_announcing(command, "s2v-server", Duration::from_secs(120), |line| {
            line.strip_prefix("listening on ").map(str::to_string)
        });
    (process, format!("http://{address}"))
}

/// What follows `marker` in `line`, trimmed, if `marker` is there.
pub fn after(line: &str, marker: &str) -> Option<String> {
    line.split_once(marker)
        .map(|(_, rest)| rest.trim().to_string())
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

/// `POST base + path` with a JSON body.
pub async fn post_json(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    body: &serde_json::Value,
) -> reqwest::Response {
    client
        .post(format!("{base}{path}"))
        .json(body)
        .send()
        .await
        .unwrap()
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

    fn shell(script: &str) -> Command {
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        command
    }

    #[test]
    fn the_announced_address_is_found_on_either_stream() {
        // `exec`: the process killed at the end is the one still running, not a shell that left it behind.
        for (script, port) in [
            (
                "echo starting; echo 'ready on 127.0.0.1:4222' >&2; exec sleep 30",
                4222,
            ),
            (
                "echo starting >&2; echo 'ready on 127.0.0.1:4223'; exec sleep 30",
                4223,
            ),
        ] {
            let (_process, address) =
                start_announcing(shell(script), "sh", Duration::from_secs(10), |line| {
                    after(line, "ready on ")
                });
            assert_eq!(address, format!("127.0.0.1:{port}"));
        }
    }

    /// The panic message of a `start_announcing` that must fail: `script` never says "ready on".
    fn failure_of(script: &str, timeout: Duration) -> String {
        let failed = std::panic::catch_unwind(|| {
            start_announcing(shell(script), "sh", timeout, |line| {
                after(line, "ready on ")
            })
        })
        .err()
        .expect("no address was announced");
        failed.downcast_ref::<String>().unwrap().clone()
    }

    #[test]
    fn a_process_that_exits_unannounced_is_reported_with_what_it_printed() {
        let message = failure_of("echo 'cannot bind' >&2; exit 3", Duration::from_secs(10));
        assert!(message.contains("cannot bind"), "{message}");
        assert!(message.contains("exit status: 3"), "{message}");
    }

    #[test]
    fn a_silent_process_is_given_up_on_after_the_timeout() {
        let started = Instant::now();
        let message = failure_of("exec sleep 30", Duration::from_millis(300));
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(
            message.contains("did not say where it listens"),
            "{message}"
        );
    }
}
