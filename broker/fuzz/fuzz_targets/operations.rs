//! Arbitrary bytes → resource operations (RESERVE, UNRESERVE, CREATE,
//! DESTROY, GROW, SHRINK, launches that mount volumes) from a framework's
//! ACCEPT and from an operator, with hostile values mixed in (other roles,
//! foreign volumes, unknown agents, negative and non-finite sizes,
//! path-escaping container paths), task ends and re-registrations. The
//! core must never panic and its books must always balance.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use weir_broker::{BrokerCore, BrokerSettings, Output};
use weir_model::{AgentId, ResourceSet};
use weir_proto::convert::resources_to_proto;
use weir_proto::v1;

const PATHS: [&str; 6] = ["data", "a/b", "../x", "/etc", "a//b", ""];
const ROLES: [&str; 4] = ["db", "web", "*", "bad role"];
const SIZES: [f64; 6] = [1.0, 100.0, 2000.0, -5.0, f64::NAN, f64::INFINITY];

fn res(spec: &str) -> Vec<v1::Resource> {
    resources_to_proto(&ResourceSet::parse(spec).unwrap())
}

fn op(b: &[u8]) -> v1::Operation {
    let at = |i: usize| b.get(i).copied().unwrap_or(0);
    let id = |i: usize| format!("x{}", at(i) % 4);
    let kind = match at(0) % 6 {
        0 => v1::operation::Kind::Reserve(v1::operation::Reserve {
            reservation_id: id(1),
            role: if at(2) % 5 == 0 { ROLES[usize::from(at(3)) % 4].into() } else { String::new() },
            resources: res(&format!("cpus:{};disk:{}", at(3) % 3, u32::from(at(4)) * 10)),
            ..Default::default()
        }),
        1 => v1::operation::Kind::Unreserve(v1::operation::Unreserve { reservation_id: id(1) }),
        2 => v1::operation::Kind::Create(v1::operation::Create {
            volume_id: id(1),
            reservation_id: id(2),
            size: SIZES[usize::from(at(3)) % 6],
            container_path: PATHS[usize::from(at(4)) % 6].into(),
            shared: at(5) % 2 == 0,
            principal: String::new(),
            backing: String::new(),
        }),
        3 => v1::operation::Kind::Destroy(v1::operation::Destroy { volume_id: id(1) }),
        4 => v1::operation::Kind::Grow(v1::operation::Grow { volume_id: id(1), size: SIZES[usize::from(at(2)) % 6] }),
        _ => v1::operation::Kind::Shrink(v1::operation::Shrink { volume_id: id(1), size: SIZES[usize::from(at(2)) % 6] }),
    };
    v1::Operation { id: id(6), role: if at(7) % 7 == 0 { ROLES[usize::from(at(8)) % 4].into() } else { String::new() }, kind: Some(kind) }
}

fuzz_target!(|data: &[u8]| {
    let mut core = BrokerCore::new(BrokerSettings::default(), "fz", Duration::ZERO, Duration::ZERO);
    let mut now = Duration::ZERO;
    let register = v1::agent_message::Register {
        agent: Some(v1::AgentInfo { hostname: "h".into(), resources: res("cpus:4;mem:4096;disk:10000"), ..Default::default() }),
        ..Default::default()
    };
    let out = core.agent_register(1, &register, now);
    let agent = out
        .iter()
        .find_map(|o| match o {
            Output::Agent(_, v1::BrokerMessage { kind: Some(v1::broker_message::Kind::Registered(r)) }) => Some(r.agent_id.clone()),
            _ => None,
        })
        .unwrap();
    for (conn, role) in [(10, "db"), (11, "db")] {
        let subscribe = v1::Call {
            framework_id: String::new(),
            kind: Some(v1::call::Kind::Subscribe(v1::call::Subscribe {
                framework: Some(v1::FrameworkInfo { name: "f".into(), roles: vec![role.into()], failover_timeout_seconds: 5.0, ..Default::default() }),
            })),
        };
        core.framework_call(conn, &subscribe, now);
    }
    let mut offers: Vec<(u64, String)> = Vec::new();
    let mut checkpoint = v1::broker_message::CheckpointResources::default();
    let mut task = 0u32;
    for chunk in data.chunks(9) {
        now += Duration::from_millis(150);
        let mut out = core.tick(now);
        let conn = 10 + u64::from(chunk[0] & 1);
        match chunk[0] >> 5 {
            0..=3 => {
                if let Some(pos) = offers.iter().position(|(c, _)| *c == conn) {
                    let (_, offer) = offers.remove(pos);
                    let mut ops = vec![op(&chunk[1..])];
                    if chunk[0] & 2 != 0 {
                        task += 1;
                        let mut t = v1::TaskInfo {
                            task_id: format!("t{task}"),
                            resources: res("cpus(db):0.1"),
                            command: Some(v1::CommandInfo { shell: true, value: "true".into(), ..Default::default() }),
                            ..Default::default()
                        };
                        if chunk[0] & 8 != 0 {
                            t.volumes.push(v1::VolumeMount { volume_id: format!("x{}", chunk.get(1).copied().unwrap_or(0) % 4), ..Default::default() });
                        }
                        ops.push(v1::Operation { kind: Some(v1::operation::Kind::Launch(v1::operation::Launch { tasks: vec![t] })), ..Default::default() });
                    }
                    let accept = v1::call::Accept { offer_ids: vec![offer], operations: ops, filters: Some(v1::Filters { refuse_seconds: Some(0.0) }) };
                    out.extend(core.framework_call(conn, &v1::Call { framework_id: String::new(), kind: Some(v1::call::Kind::Accept(accept)) }, now));
                }
            }
            4 | 5 => {
                let target = if chunk[0] & 4 != 0 { AgentId::new(agent.clone()) } else { AgentId::new("nope") };
                let mut o = op(&chunk[1..]);
                if o.role.is_empty() {
                    o.role = "db".into();
                }
                out.extend(core.operator_operations(&target, &[o], now).1);
            }
            6 => {
                // A task ends.
                let status = v1::TaskStatus {
                    task_id: format!("t{}", u32::from(chunk.get(1).copied().unwrap_or(0)) % (task + 1)),
                    state: v1::TaskState::TaskFinished as i32,
                    uuid: vec![chunk.get(2).copied().unwrap_or(0); 16],
                    ..Default::default()
                };
                let msg = v1::AgentMessage { kind: Some(v1::agent_message::Kind::StatusUpdate(v1::agent_message::StatusUpdate { status: Some(status) })) };
                out.extend(core.agent_message(1, &msg, now));
            }
            _ => {
                // The agent re-registers with what it last checkpointed.
                let mut again = register.clone();
                again.agent.as_mut().unwrap().id = agent.clone();
                again.reservations = checkpoint.reservations.clone();
                again.volumes = checkpoint.volumes.clone();
                out.extend(core.agent_register(1, &again, now));
                offers.clear();
            }
        }
        for o in &out {
            match o {
                Output::Offers(c, batch) => {
                    offers.extend(batch.to_proto().into_iter().map(|x| (*c, x.id)));
                }
                Output::Agent(_, v1::BrokerMessage { kind: Some(v1::broker_message::Kind::CheckpointResources(c)) }) => {
                    checkpoint = c.clone();
                }
                _ => {}
            }
        }
        if let Err(e) = core.check_invariants() {
            panic!("books out of balance: {e}");
        }
        let _ = core.state(now);
    }
});
