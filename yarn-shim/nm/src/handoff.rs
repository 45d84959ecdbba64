//! The node manager ⇄ container handoff.
//!
//! Each YARN container is a broker task of its own (so the broker's books,
//! DRF and the agent's cgroup all see it) running `weir yarn-container`.
//! That process connects to its agent's node manager over a Linux abstract
//! Unix socket named after the node manager's port, says which container
//! it is and where its sandbox is, and waits. When the ApplicationMaster
//! calls `startContainers`, the node manager localizes into that sandbox,
//! writes the launch script and tells the waiting process to run it; the
//! process runs it as its child (inside the task's cgroup), reports the
//! start and the exit, and exits with the container's exit code, which
//! the agent reports to the broker and the broker to the shim.
//!
//! Messages are JSON, one per line, each at most [`MAX_LINE`] bytes.

use serde::{Deserialize, Serialize};

/// Longest message either side accepts.
pub const MAX_LINE: usize = 64 * 1024;

/// The abstract socket name of the node manager on `port` of the agent
/// the process runs under (agents set `WEIR_AGENT_ID` for their tasks), so
/// node managers of several agents on one host never meet.
pub fn socket_name(port: u16) -> String {
    let agent = std::env::var("WEIR_AGENT_ID").unwrap_or_default();
    format!("weir-yarn-nm-{agent}-{port}")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToNm {
    Hello { container: String, sandbox: String, pid: u32 },
    Started { pid: u32 },
    Exited { code: Option<i32>, signal: Option<i32> },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToContainer {
    /// Run `bash <script>` in `work_dir`.
    Launch { script: String, work_dir: String },
    /// Give up: the container will not be started (the reason is printed).
    Abandon { reason: String },
    /// stopContainers: SIGTERM the container, SIGKILL after `grace_ms`.
    Stop { grace_ms: u64 },
}

pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    let mut line = serde_json::to_vec(message).unwrap_or_default();
    line.push(b'\n');
    line
}

/// One line (without its newline) → a message, with what was wrong.
pub fn decode<'a, T: Deserialize<'a>>(line: &'a [u8]) -> Result<T, String> {
    if line.len() > MAX_LINE {
        return Err(format!("a handoff message of {} bytes is over the {MAX_LINE}-byte limit", line.len()));
    }
    serde_json::from_slice(line).map_err(|e| format!("a handoff message does not parse: {e}"))
}

/// The abstract address for `name` (Linux only).
pub fn address(name: &str) -> std::io::Result<std::os::unix::net::SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_bad_lines_say_what_is_wrong() {
        let m = ToNm::Hello { container: "container_1_0001_01_000002".into(), sandbox: "/s".into(), pid: 7 };
        let line = encode(&m);
        assert_eq!(line.last(), Some(&b'\n'));
        assert_eq!(decode::<ToNm>(&line[..line.len() - 1]).unwrap(), m);
        let l = encode(&ToContainer::Stop { grace_ms: 250 });
        assert_eq!(decode::<ToContainer>(&l[..l.len() - 1]).unwrap(), ToContainer::Stop { grace_ms: 250 });
        assert!(decode::<ToNm>(b"{\"nope\":1}").unwrap_err().contains("does not parse"));
        assert!(decode::<ToNm>(&vec![b' '; MAX_LINE + 1]).unwrap_err().contains("limit"));
    }
}
