//! Reading a task's output from its agent (`/files/read`), shared by
//! `weir run` (which streams while the task runs) and `weir logs`.

use std::io::Write;
use std::time::Duration;

use tokio::sync::watch;

/// Which of a task's files to copy, and to where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    fn write(self, bytes: &[u8]) {
        match self {
            Stream::Stdout => {
                let mut out = std::io::stdout();
                let _ = out.write_all(bytes);
                let _ = out.flush();
            }
            Stream::Stderr => {
                let _ = std::io::stderr().write_all(bytes);
            }
        }
    }
}

/// Copies `streams` of a task from the agent at `agent_http` to ours,
/// polling until `done` turns true, then drains what is left. With `done`
/// already true it copies what is there and returns. Returns an error if
/// the agent could not be asked at all (no such task, agent down).
pub async fn copy_output(
    agent_http: &str,
    framework: &str,
    task: &str,
    streams: &[Stream],
    mut done: watch::Receiver<bool>,
) -> Result<(), String> {
    // One CA for the cluster: with --ca-file the agents speak TLS too; an
    // agent that asks for a token gets the one this process has.
    let (client, scheme) = crate::settings::http_client(Duration::from_secs(10)).map_err(|e| format!("{e:#}"))?;
    let url = format!("{scheme}://{agent_http}/files/read");
    let mut offsets = vec![0u64; streams.len()];
    let mut first = true;
    loop {
        let finished = *done.borrow();
        for (i, stream) in streams.iter().enumerate() {
            loop {
                let offset = offsets[i].to_string();
                let query = [("framework_id", framework), ("task_id", task), ("file", stream.name()), ("offset", &offset), ("length", "65536")];
                let resp = match crate::settings::with_token(client.get(&url).query(&query)).send().await {
                    Ok(resp) => resp,
                    Err(e) if first => return Err(format!("cannot reach the agent at {agent_http}: {e}")),
                    Err(_) => break,
                };
                if !resp.status().is_success() {
                    // Following a task the broker has just sent: its agent
                    // may not have made the sandbox yet. Wait for it while
                    // the task lives; refuse once it has ended without one.
                    if first && resp.status() == reqwest::StatusCode::NOT_FOUND && !finished {
                        break;
                    }
                    if first {
                        let status = resp.status();
                        let body = resp.text().await.unwrap_or_default();
                        let hint = match status {
                            reqwest::StatusCode::UNAUTHORIZED => " (give a token with --token-file or WEIR_TOKEN)",
                            _ => "",
                        };
                        return Err(format!("the agent at {agent_http} refused ({status}): {}{hint}", body.trim()));
                    }
                    break;
                }
                first = false;
                let Ok(bytes) = resp.bytes().await else { break };
                if bytes.is_empty() {
                    break;
                }
                offsets[i] += bytes.len() as u64;
                stream.write(&bytes);
            }
        }
        if finished {
            return Ok(());
        }
        tokio::select! {
            _ = done.changed() => {}
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}
