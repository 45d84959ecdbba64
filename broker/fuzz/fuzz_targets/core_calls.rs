//! Arbitrary bytes → a sequence of wire messages (framework calls, agent
//! messages, registrations) and clock ticks fed to one broker core. The
//! core must never panic, whatever arrives, in whatever order.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use prost::Message;
use weir_broker::{BrokerCore, BrokerSettings};
use weir_model::ResourceSet;
use weir_proto::convert::resources_to_proto;
use weir_proto::v1;

fuzz_target!(|data: &[u8]| {
    let mut core = BrokerCore::new(BrokerSettings::default(), "fz", Duration::ZERO, Duration::ZERO);
    let mut now = Duration::ZERO;
    // A well-formed agent and framework first, so calls reach deep paths.
    let register = v1::agent_message::Register {
        agent: Some(v1::AgentInfo {
            hostname: "h".into(),
            resources: resources_to_proto(&ResourceSet::parse("cpus:4;mem:4096;ports:[1-10]").unwrap()),
            ..Default::default()
        }),
        tasks: vec![],
        ..Default::default()
    };
    core.agent_register(1, &register, now);
    let subscribe = v1::Call {
        framework_id: String::new(),
        kind: Some(v1::call::Kind::Subscribe(v1::call::Subscribe {
            framework: Some(v1::FrameworkInfo { name: "f".into(), failover_timeout_seconds: 5.0, ..Default::default() }),
        })),
    };
    core.framework_call(10, &subscribe, now);
    core.tick(Duration::from_millis(200));

    let mut rest = data;
    while let Some((&selector, tail)) = rest.split_first() {
        rest = tail;
        let conn = u64::from(selector >> 4) % 4;
        match selector & 0x0f {
            0..=5 => match v1::Call::decode_length_delimited(&mut rest) {
                Ok(call) => drop(core.framework_call(10 + conn, &call, now)),
                Err(_) => break,
            },
            6..=10 => match v1::AgentMessage::decode_length_delimited(&mut rest) {
                Ok(msg) => drop(core.agent_message(1 + conn, &msg, now)),
                Err(_) => break,
            },
            11 => match v1::agent_message::Register::decode_length_delimited(&mut rest) {
                Ok(reg) => drop(core.agent_register(1 + conn, &reg, now)),
                Err(_) => break,
            },
            12 => drop(core.framework_detached(10 + conn, now)),
            13 => drop(core.agent_detached(1 + conn, now)),
            _ => {
                now += Duration::from_millis(u64::from(selector) * 97);
                drop(core.tick(now));
            }
        }
        let _ = core.state(now);
    }
});
