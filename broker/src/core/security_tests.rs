//! The core's half of security (issue 21): a framework belongs to the
//! principal that subscribed it, resource operations in ACCEPTs obey the
//! ACLs, and reservations and volumes record the caller's principal.

use std::time::Duration;

use weir_model::ResourceSet;
use weir_proto::convert::resources_to_proto;
use weir_proto::v1;

use super::tests::{ms, Harness, AGENT_A, FW_1, FW_2};
use super::*;
use crate::acl::{Acls, Action};

fn subscribe_as_principal(h: &mut Harness, conn: ConnId, id: &str, principal: &str) -> Vec<Output> {
    h.call(
        conn,
        v1::call::Kind::Subscribe(v1::call::Subscribe {
            data: None,
            framework: Some(v1::FrameworkInfo {
                id: id.into(),
                name: "db".into(),
                roles: vec!["db".into()],
                failover_timeout_seconds: 60.0,
                principal: principal.into(),
                ..Default::default()
            }),
        }),
    )
}

fn subscribed(out: &[Output]) -> Option<String> {
    out.iter().find_map(|o| match o {
        Output::Framework(_, v1::Event { kind: Some(v1::event::Kind::Subscribed(s)) }) => Some(s.framework_id.clone()),
        _ => None,
    })
}

#[test]
fn only_the_owning_principal_may_resubscribe_under_a_framework_id() {
    let mut h = Harness::new();
    let id = subscribed(&subscribe_as_principal(&mut h, FW_1, "", "alice")).unwrap();
    assert_eq!(h.core.framework_principal(&FrameworkId::new(id.clone())), Some("alice"));
    let out = subscribe_as_principal(&mut h, FW_2, &id, "bob");
    assert!(subscribed(&out).is_none());
    let errors = Harness::errors_in(&out, FW_2);
    assert!(errors[0].contains("belongs to principal \"alice\", not \"bob\""), "{errors:?}");
    assert!(out.contains(&Output::Close(FW_2)));
    // Alice's stream was not touched, and her framework is still hers.
    assert!(!out.iter().any(|o| matches!(o, Output::Framework(c, _) | Output::Offers(c, _) | Output::Close(c) if *c == FW_1)));
    let state = h.core.state(h.now);
    assert_eq!((state.frameworks[0].principal.as_str(), state.frameworks[0].active), ("alice", true));
    // Alice herself fails over from a new stream.
    assert_eq!(subscribed(&subscribe_as_principal(&mut h, FW_2, &id, "alice")), Some(id));
    h.core.check_invariants().unwrap();
}

fn reserve_op(principal: &str) -> v1::Operation {
    v1::Operation {
        id: "op".into(),
        kind: Some(v1::operation::Kind::Reserve(v1::operation::Reserve {
            reservation_id: "r1".into(),
            resources: resources_to_proto(&ResourceSet::parse("cpus:1;disk:100").unwrap()),
            principal: principal.into(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn accept_with(h: &mut Harness, op: v1::Operation) -> Vec<String> {
    let offer = (0..20).find_map(|_| Harness::offers_in(&h.advance(ms(200)), FW_1).into_iter().next()).expect("an offer");
    let out = h.call(
        FW_1,
        v1::call::Kind::Accept(v1::call::Accept {
            offer_ids: vec![offer.id.clone()],
            operations: vec![op],
            filters: Some(v1::Filters { refuse_seconds: Some(0.0) }),
        }),
    );
    out.iter()
        .filter_map(|o| match o {
            Output::Framework(_, v1::Event { kind: Some(v1::event::Kind::OperationStatus(s)) }) => Some(s.message.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn accepts_obey_the_acls_and_record_the_frameworks_principal() {
    let acls = Acls::from_lists([(Action::RegisterFramework, "*: *"), (Action::Reserve, "alice: db")]).unwrap();
    let settings = BrokerSettings { acls, agent_unreachable_timeout: Duration::from_secs(5), ..Default::default() };
    let mut h = Harness::new();
    h.core = BrokerCore::new(settings, "b", Duration::ZERO, Duration::from_secs(1_700_000_000));
    h.register_agent(AGENT_A, "", "cpus:4;mem:4096;disk:1000", vec![]);
    // Bob may not reserve for db: refused, nothing reserved.
    subscribed(&subscribe_as_principal(&mut h, FW_1, "", "bob")).unwrap();
    let messages = accept_with(&mut h, reserve_op(""));
    assert!(messages[0].contains("permission denied: principal \"bob\" may not reserve \"db\""), "{messages:?}");
    assert!(messages[0].contains("broker.acl.reserve"), "{messages:?}");
    assert!(h.core.state(h.now).agents[0].reservations.is_empty());
    h.core.check_invariants().unwrap();

    // Alice may; naming someone else as the reservation's principal is
    // refused, naming none records hers.
    let out = h.call(FW_1, v1::call::Kind::Teardown(v1::call::Teardown::default()));
    drop(out);
    subscribed(&subscribe_as_principal(&mut h, FW_1, "", "alice")).unwrap();
    let messages = accept_with(&mut h, reserve_op("ops"));
    assert!(messages[0].contains("reserve.principal \"ops\" is not the caller's principal \"alice\""), "{messages:?}");
    let messages = accept_with(&mut h, reserve_op(""));
    assert!(messages[0].contains("reserved"), "{messages:?}");
    assert_eq!(h.core.state(h.now).agents[0].reservations[0].principal, "alice");
    h.core.check_invariants().unwrap();
}
