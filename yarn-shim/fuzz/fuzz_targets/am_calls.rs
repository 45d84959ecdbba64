//! ApplicationMaster calls as they reach the scheduler: arbitrary bytes
//! decoded as AllocateRequestProto (asks, releases, blacklist, response
//! id), interleaved with offers, task updates and ticks, against one
//! registered attempt. Nothing may panic, and the scheduler's and the RM
//! core's invariants must hold after every step. Also feeds the bytes to
//! the node manager handoff decoder.

#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use weir_yarn_nm::handoff::{self, ToContainer, ToNm};
use weir_yarn_rm::am_protocol::asks_from_proto;
use weir_yarn_api::ids::{AttemptId, ContainerId, NodeId};
use weir_yarn_api::records as r;
use weir_yarn_rm::rm_core::{Capacity, NodeState, ObservedNode, RmCore, Submission};
use weir_yarn_rm::scheduler::{AllocateCall, Offer, Scheduler, SchedulerConfig, TaskEvent};
use weir_yarn_api::convert;

fuzz_target!(|data: &[u8]| {
    let _ = handoff::decode::<ToNm>(data);
    let _ = handoff::decode::<ToContainer>(data);
    let mut rm = RmCore::new(1, &["default".to_string()], 10).unwrap();
    rm.observe_nodes(
        vec![ObservedNode {
            agent_id: "a1".into(),
            node_id: NodeId { host: "h1".into(), port: 1 },
            http_address: "h1:1".into(),
            capability: Capacity { memory_mb: 8192, vcores: 8 },
            used: Capacity::default(),
            containers: 0,
            state: NodeState::Running,
            health_report: String::new(),
            decommission_deadline_ms: None,
        }],
        0,
    );
    let (app, _) = rm.new_application().unwrap();
    let submission = Submission {
        id: app,
        name: "f".into(),
        queue: "default".into(),
        user: "u".into(),
        application_type: "YARN".into(),
        tags: vec![],
        priority: 0,
        am_resource: Some(Capacity { memory_mb: 512, vcores: 1 }),
        max_attempts: 2,
        unmanaged_am: false,
        am_launch: Some(Default::default()),
    };
    rm.submit(submission, 0).unwrap();
    let mut s = Scheduler::new(SchedulerConfig { max_containers_per_offer: 4, ..SchedulerConfig::default() });
    s.tick(&mut rm, 0);
    let offer = |n: usize| Offer {
        id: format!("o{n}").into(),
        agent_id: "a1".into(),
        hostname: "h1".into(),
        role: "default".into(),
        cpus: weir_model::Milli::from_units(8),
        mem_mb: weir_model::Milli::from_units(8192),
        ports: vec![(1, 3)],
    };
    s.offers(vec![offer(0)], 1);
    let attempt = AttemptId { app, attempt: 1 };
    let _ = s.register(&mut rm, attempt, 2);
    // Split the input into chunks: each is one allocate request, then an
    // offer, an update of some container and a tick, driven by its bytes.
    for (i, chunk) in data.chunks(64).enumerate() {
        let now = 10 + i as i64 * 1000;
        if let Ok(req) = r::AllocateRequestProto::decode(chunk) {
            if let Ok(asks) = asks_from_proto(&req.ask) {
                let releases = req.release.iter().filter_map(convert::container_from_proto).collect();
                let call = AllocateCall { response_id: req.response_id(), asks, releases, ..Default::default() };
                let _ = s.allocate(&rm, attempt, call, now);
            }
        }
        s.offers(vec![offer(i + 1)], now + 1);
        let which = chunk.first().copied().unwrap_or(0) as i64 % 8;
        let event = match chunk.get(1).copied().unwrap_or(0) % 4 {
            0 => TaskEvent::Running,
            1 => TaskEvent::Exited { code: Some(chunk.len() as i32 % 3), signal: None, message: String::new() },
            2 => TaskEvent::MemoryLimit { message: String::new() },
            _ => TaskEvent::Lost { message: String::new() },
        };
        let cid = ContainerId { attempt: s.current_attempt(app).unwrap_or(attempt), id: which };
        s.task_update(&mut rm, &weir_model::TaskId::new(cid.to_string()), event, now + 2);
        s.tick(&mut rm, now + 3);
        s.check_invariants().unwrap();
        rm.check_invariants().unwrap();
    }
});
