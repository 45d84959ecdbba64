//! Arbitrary bytes → registry records (what a new leader reads from
//! ZooKeeper, which anyone with access could have written) → a core that
//! recovers from them, then takes an agent registration, a subscription
//! and ticks past the recovery timeout. Bad records must be skipped and
//! reported; nothing may panic.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use weir_broker::{BrokerCore, BrokerSettings};
use weir_ha::Record;
use weir_model::ResourceSet;
use weir_proto::convert::resources_to_proto;
use weir_proto::v1;

const COLLECTIONS: [&str; 5] = ["agents", "frameworks", "weights", "resources", "other"];

fuzz_target!(|data: &[u8]| {
    // Each record: collection selector, key length, key, value length, value.
    let mut records = Vec::new();
    let mut rest = data;
    while rest.len() >= 3 {
        let collection = COLLECTIONS[usize::from(rest[0]) % COLLECTIONS.len()];
        let key_len = usize::from(rest[1]).min(rest.len() - 2);
        let key = String::from_utf8_lossy(&rest[2..2 + key_len]).into_owned();
        rest = &rest[2 + key_len..];
        let Some((&value_len, tail)) = rest.split_first() else { break };
        let value_len = usize::from(value_len).min(tail.len());
        records.push(Record { collection: collection.into(), key, value: tail[..value_len].to_vec() });
        rest = &tail[value_len..];
    }
    let settings = BrokerSettings { recovery_timeout: Duration::from_secs(1), ..Default::default() };
    let mut core = BrokerCore::new(settings, "fz", Duration::ZERO, Duration::ZERO);
    let report = core.recover(&records, 7, Duration::ZERO);
    assert!(report.agents + report.frameworks + report.weights + report.resources + report.skipped.len() <= records.len());
    let register = v1::agent_message::Register {
        agent: Some(v1::AgentInfo {
            id: records.first().map(|r| r.key.clone()).unwrap_or_default(),
            hostname: "h".into(),
            resources: resources_to_proto(&ResourceSet::parse("cpus:4;mem:4096").unwrap()),
            ..Default::default()
        }),
        tasks: vec![],
        ..Default::default()
    };
    core.agent_register(1, &register, Duration::ZERO);
    let subscribe = v1::Call {
        framework_id: String::new(),
        kind: Some(v1::call::Kind::Subscribe(v1::call::Subscribe {
            framework: Some(v1::FrameworkInfo {
                id: records.get(1).map(|r| r.key.clone()).unwrap_or_default(),
                name: "f".into(),
                ..Default::default()
            }),
        })),
    };
    core.framework_call(10, &subscribe, Duration::ZERO);
    for step in 1..=20 {
        core.tick(Duration::from_millis(100 * step));
    }
    let _ = serde_json::to_vec(&core.state(Duration::from_secs(2)));
});
