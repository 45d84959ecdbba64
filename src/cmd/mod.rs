//! One module per subcommand.

pub mod agent;
pub mod bench;
pub mod broker;
pub mod conf;
pub mod executor;
pub mod logs;
pub mod reserve;
pub mod role;
pub mod run;
pub mod sandbox;
pub mod standalone;
pub mod status;
pub mod testbed;
pub mod yarn;

/// Resolves when the process is asked to stop (Ctrl-C/SIGINT or SIGTERM).
///
/// The handlers are installed when this is called, not when the future is
/// first polled: a signal that arrives in between must not kill the
/// process with its default action.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{signal, SignalKind};
    let interrupt = signal(SignalKind::interrupt());
    let terminate = signal(SignalKind::terminate());
    async move {
        match (interrupt, terminate) {
            (Ok(mut int), Ok(mut term)) => {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        tracing::info!("stop requested");
    }
}

/// `s` with control characters escaped (`\u{1b}`, `\n`…), for printing
/// names and messages that clients and agents supply: raw, an escape
/// sequence in a framework's name could rewrite the operator's terminal.
pub fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod printable_tests {
    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(super::printable("plain name ü"), "plain name ü");
        assert_eq!(super::printable("evil\x1b]0;pwned\x07\nname\r"), "evil\\u{1b}]0;pwned\\u{7}\\nname\\r");
        assert_eq!(super::printable("\u{9b}31m"), "\\u{9b}31m");
    }
}
