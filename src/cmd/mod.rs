//! One module per subcommand.

pub mod agent;
pub mod bench;
pub mod broker;
pub mod conf;
pub mod executor;
pub mod logs;
pub mod reserve;
pub mod run;
pub mod sandbox;
pub mod standalone;
pub mod status;
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
