//! A stateful framework in a few lines: it keeps a counter in a persistent
//! volume. On its first run it reserves part of an agent for its role,
//! creates a volume there and starts a task that writes the counter; when
//! it (or its task) is killed and started again with the same state file,
//! it resumes as the same framework, is offered its volume again, and the
//! next task finds the data and counts on.
//!
//! ```console
//! $ weir standalone --resources 'cpus:2;mem:2048;disk:4096' &
//! $ cargo run -p weir-sdk --example stateful -- 127.0.0.1:5050 /tmp/counter.state
//! counter was 0, is now 1
//! $ cargo run -p weir-sdk --example stateful -- 127.0.0.1:5050 /tmp/counter.state
//! counter was 1, is now 2
//! ```
//!
//! The state file holds only the framework id: everything else (the
//! reservation, the volume, the data) the broker and the agent keep.

use std::time::Duration;

use weir_model::{FrameworkId, OfferId, ReservationId, Resources, VolumeId};
use weir_proto::convert::resources_to_proto;
use weir_proto::v1;
use weir_sdk::operations::{create_volume, finished, launch, mount, reserve};
use weir_sdk::{Framework, FrameworkConfig};

const ROLE: &str = "counter";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let broker = args.next().unwrap_or_else(|| "127.0.0.1:5050".to_owned());
    let state_file = args.next().unwrap_or_else(|| "counter.state".to_owned());
    let mut config = FrameworkConfig::new(broker, "stateful-example");
    config.roles = vec![ROLE.to_owned()];
    // Long enough to be killed and started again without losing anything.
    config.failover_timeout = Duration::from_secs(3600);
    config.framework_id = std::fs::read_to_string(&state_file).ok().map(|s| FrameworkId::new(s.trim()));
    let mut framework = Framework::subscribe(config).await?;
    std::fs::write(&state_file, framework.id().as_str())?;

    let (reservation, volume) = (ReservationId::new("counter-r1"), VolumeId::new("counter-data"));
    let script = "n=$(cat data/counter 2>/dev/null || echo 0); echo $((n+1)) > data/counter; echo \"counter was $n, is now $((n+1))\"";
    let mut launched = false;
    while let Some(event) = framework.next_event().await? {
        match event.kind {
            Some(v1::event::Kind::Offers(offers)) => {
                for offer in offers.offers {
                    let id = OfferId::new(offer.id.clone());
                    if launched {
                        framework.decline(&[id], Some(Duration::from_secs(30))).await?;
                        continue;
                    }
                    let mut ops = Vec::new();
                    let has_volume = offer.volumes.iter().any(|v| v.id == volume.as_str());
                    if !has_volume {
                        // First run (or the volume is gone): reserve and
                        // create under fixed ids, so a retry is harmless.
                        let wanted = Resources::parse("cpus:0.5;mem:64;disk:256")?;
                        ops.push(reserve("reserve-1", &reservation, &wanted, "stateful-example"));
                        ops.push(create_volume("create-1", &volume, &reservation, 128.0, "data", false));
                    }
                    let mut task = v1::TaskInfo {
                        task_id: format!("count-{}", std::process::id()),
                        name: "count".into(),
                        resources: resources_to_proto(&weir_model::ResourceSet::parse(&format!("cpus({ROLE}):0.5;mem({ROLE}):64"))?),
                        command: Some(v1::CommandInfo { shell: true, value: script.into(), ..Default::default() }),
                        ..Default::default()
                    };
                    mount(&mut task, &volume, "", false);
                    ops.push(launch(vec![task]));
                    framework.accept(&[id], ops, Some(Duration::from_secs(1))).await?;
                    launched = true;
                }
            }
            Some(v1::event::Kind::OperationStatus(status)) => {
                if !finished(&status) {
                    eprintln!("{} failed: {}", status.kind, status.message);
                    launched = false;
                }
            }
            Some(v1::event::Kind::Update(update)) => {
                let Some(status) = update.status else { continue };
                framework.acknowledge(&status).await?;
                let state = v1::TaskState::try_from(status.state).unwrap_or(v1::TaskState::Unspecified);
                match state {
                    v1::TaskState::TaskFinished => {
                        eprintln!("task {} finished; its output is in its sandbox (weir logs {} --framework {})", status.task_id, status.task_id, framework.id());
                        return Ok(());
                    }
                    v1::TaskState::TaskFailed | v1::TaskState::TaskError | v1::TaskState::TaskDropped => {
                        eprintln!("task {}: {:?}: {}", status.task_id, state, status.message);
                        launched = false;
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    Ok(())
}
