//! A stateful framework in the simulation: in its own role it reserves
//! resources, creates volumes on them, launches tasks that mount them,
//! grows, shrinks and destroys volumes, unreserves, retries operations
//! under the same ids (they must finish without doing anything twice), and
//! now and then sends a hostile one (an escaping container path, a negative
//! size, another framework's volume) that must fail. The world checks the
//! broker's books, reservations and volumes included, after every event
//! and through every fault; this participant checks that every operation
//! it sent was answered as the rules say.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use weir_model::{ResourceSet, TaskState};
use weir_proto::convert::{resources_from_proto, resources_to_proto, task_state_from_proto};
use weir_proto::v1;

use crate::framework::{FrameworkCtx, SimFramework, TaskPlan};

/// What the runs did, so a test can tell the operations were exercised.
#[derive(Debug, Clone, Default)]
pub struct StatefulStats {
    pub finished: u64,
    pub failed: u64,
    pub hostile_failed: u64,
    pub launched_on_volumes: u64,
}

pub struct StatefulFramework {
    label: String,
    role: String,
    id: String,
    failover_timeout: Duration,
    next: u64,
    tasks: BTreeMap<String, (TaskState, String)>,
    /// Operation ids sent that must fail (hostile input), and the last
    /// non-hostile operation sent (to retry under the same id).
    hostile: Vec<String>,
    last_op: Option<v1::Operation>,
    quiescing: bool,
    stats: Rc<RefCell<StatefulStats>>,
    problems: Vec<String>,
}

impl StatefulFramework {
    pub fn new(label: impl Into<String>, role: impl Into<String>) -> StatefulFramework {
        StatefulFramework {
            label: label.into(),
            role: role.into(),
            id: String::new(),
            failover_timeout: Duration::from_secs(30),
            next: 0,
            tasks: BTreeMap::new(),
            hostile: Vec::new(),
            last_op: None,
            quiescing: false,
            stats: Rc::new(RefCell::new(StatefulStats::default())),
            problems: Vec::new(),
        }
    }

    pub fn stats(&self) -> Rc<RefCell<StatefulStats>> {
        self.stats.clone()
    }

    fn call(&self, kind: v1::call::Kind) -> v1::Call {
        v1::Call { framework_id: self.id.clone(), kind: Some(kind) }
    }

    fn fresh(&mut self, what: &str) -> String {
        self.next += 1;
        format!("{}-{what}{}", self.label, self.next)
    }

    fn op(&mut self, kind: v1::operation::Kind) -> v1::Operation {
        let id = self.fresh("op");
        v1::Operation { id, kind: Some(kind), ..Default::default() }
    }

    fn task(&mut self, offer: &v1::Offer, volume: Option<&str>, ctx: &mut FrameworkCtx) -> v1::TaskInfo {
        let task_id = self.fresh("t");
        let plan = TaskPlan { run_for: Some(ctx.rng.millis(300, 8_000)), exit_code: 0, ignores_term: false };
        let resources = ResourceSet::parse(&format!("cpus({r}):0.1;mem({r}):16", r = self.role)).unwrap_or_default();
        self.tasks.insert(task_id.clone(), (TaskState::Staging, offer.agent_id.clone()));
        v1::TaskInfo {
            task_id: task_id.clone(),
            name: task_id,
            agent_id: offer.agent_id.clone(),
            resources: resources_to_proto(&resources),
            command: Some(v1::CommandInfo { shell: true, value: plan.command(), ..Default::default() }),
            kill_grace_seconds: 1.0,
            volumes: volume
                .map(|v| vec![v1::VolumeMount { volume_id: v.to_owned(), container_path: String::new(), read_only: false }])
                .unwrap_or_default(),
            ..Default::default()
        }
    }

    /// What to do with one offer: a few operations, maybe a launch.
    fn answer(&mut self, offer: &v1::Offer, ctx: &mut FrameworkCtx) -> v1::Call {
        let mut ops = Vec::new();
        let roll = ctx.rng.below(100);
        let unreserved = resources_from_proto("offer", &offer.resources).map(|r| r.unreserved).unwrap_or_default();
        let mine: Vec<String> = offer.reservations.iter().filter(|r| r.framework_id == self.id).map(|r| r.id.clone()).collect();
        let volumes: Vec<String> = offer.volumes.iter().map(|v| v.id.clone()).collect();
        if roll < 5 {
            // Hostile: must fail and change nothing.
            let target = mine.first().cloned().unwrap_or_else(|| "nope".to_owned());
            let kind = match ctx.rng.below(3) {
                0 => v1::operation::Kind::Create(v1::operation::Create {
                    volume_id: "evil".into(),
                    reservation_id: target,
                    size: 10.0,
                    container_path: "../../etc".into(),
                    ..Default::default()
                }),
                1 => v1::operation::Kind::Grow(v1::operation::Grow { volume_id: "evil".into(), size: -1.0 }),
                _ => v1::operation::Kind::Reserve(v1::operation::Reserve {
                    role: "someone-else".into(),
                    resources: resources_to_proto(&ResourceSet::parse("cpus:0.1").unwrap_or_default()),
                    ..Default::default()
                }),
            };
            let op = self.op(kind);
            self.hostile.push(op.id.clone());
            ops.push(op);
        } else if roll < 12 {
            if let Some(op) = self.last_op.clone() {
                // A retry under the same id: nothing happens twice.
                ops.push(op);
            }
        } else if roll < 35 && mine.is_empty() && unreserved.cpus.0 >= 300 && unreserved.disk.0 >= 1_000_000 {
            let reservation = self.fresh("r");
            let volume = self.fresh("v");
            let reserve = self.op(v1::operation::Kind::Reserve(v1::operation::Reserve {
                reservation_id: reservation.clone(),
                resources: resources_to_proto(&ResourceSet::parse("cpus:0.3;mem:64;disk:1000").unwrap_or_default()),
                principal: self.label.clone(),
                ..Default::default()
            }));
            let create = self.op(v1::operation::Kind::Create(v1::operation::Create {
                volume_id: volume.clone(),
                reservation_id: reservation,
                size: (100 + ctx.rng.below(800)) as f64,
                container_path: "data".into(),
                shared: ctx.rng.chance(0.3),
                principal: self.label.clone(),
                backing: String::new(),
            }));
            self.last_op = Some(create.clone());
            ops.push(reserve);
            ops.push(create);
            if ctx.rng.chance(0.7) {
                let t = self.task(offer, Some(&volume), ctx);
                ops.push(v1::Operation { kind: Some(v1::operation::Kind::Launch(v1::operation::Launch { tasks: vec![t] })), ..Default::default() });
                self.stats.borrow_mut().launched_on_volumes += 1;
            }
        } else if roll < 70 && !volumes.is_empty() {
            let volume = ctx.rng.pick(&volumes).cloned().unwrap_or_default();
            match ctx.rng.below(10) {
                0 | 1 => {
                    let op = self.op(v1::operation::Kind::Destroy(v1::operation::Destroy { volume_id: volume }));
                    ops.push(op);
                }
                2 => {
                    let op = self.op(v1::operation::Kind::Grow(v1::operation::Grow { volume_id: volume, size: 50.0 }));
                    ops.push(op);
                }
                3 => {
                    let op = self.op(v1::operation::Kind::Shrink(v1::operation::Shrink { volume_id: volume, size: 50.0 }));
                    ops.push(op);
                }
                _ => {
                    let t = self.task(offer, Some(&volume), ctx);
                    ops.push(v1::Operation { kind: Some(v1::operation::Kind::Launch(v1::operation::Launch { tasks: vec![t] })), ..Default::default() });
                    self.stats.borrow_mut().launched_on_volumes += 1;
                }
            }
        } else if roll < 80 {
            if let Some(r) = ctx.rng.pick(&mine).cloned() {
                let op = self.op(v1::operation::Kind::Unreserve(v1::operation::Unreserve { reservation_id: r }));
                ops.push(op);
            }
        }
        if ops.is_empty() {
            return self.call(v1::call::Kind::Decline(v1::call::Decline {
                offer_ids: vec![offer.id.clone()],
                filters: Some(v1::Filters { refuse_seconds: Some(ctx.rng.below(2000) as f64 / 1000.0) }),
            }));
        }
        self.call(v1::call::Kind::Accept(v1::call::Accept {
            offer_ids: vec![offer.id.clone()],
            operations: ops,
            filters: Some(v1::Filters { refuse_seconds: Some(0.2) }),
        }))
    }

    fn reconcile(&self) -> v1::Call {
        let tasks = self
            .tasks
            .iter()
            .filter(|(_, (s, _))| !s.is_terminal())
            .map(|(t, (_, a))| v1::call::reconcile::Task { task_id: t.clone(), agent_id: a.clone() })
            .collect();
        self.call(v1::call::Kind::Reconcile(v1::call::Reconcile { tasks }))
    }
}

impl SimFramework for StatefulFramework {
    fn label(&self) -> &str {
        &self.label
    }

    fn failover_timeout(&self) -> Duration {
        self.failover_timeout
    }

    fn subscribe(&mut self, _ctx: &mut FrameworkCtx) -> v1::Call {
        crate::framework::subscribe_call(&self.id, &self.label, vec![self.role.clone()], self.failover_timeout)
    }

    fn on_event(&mut self, event: &v1::Event, ctx: &mut FrameworkCtx) -> Vec<v1::Call> {
        match &event.kind {
            Some(v1::event::Kind::Subscribed(s)) => {
                self.id = s.framework_id.clone();
                vec![self.reconcile()]
            }
            Some(v1::event::Kind::Offers(offers)) => offers
                .offers
                .iter()
                .map(|o| {
                    if self.quiescing {
                        self.call(v1::call::Kind::Decline(v1::call::Decline { offer_ids: vec![o.id.clone()], filters: None }))
                    } else {
                        self.answer(o, ctx)
                    }
                })
                .collect(),
            Some(v1::event::Kind::OperationStatus(s)) => {
                let finished = s.state == v1::OperationState::OperationFinished as i32;
                let mut stats = self.stats.borrow_mut();
                if finished {
                    stats.finished += 1;
                } else {
                    stats.failed += 1;
                }
                if let Some(pos) = self.hostile.iter().position(|h| *h == s.operation_id) {
                    self.hostile.remove(pos);
                    if finished {
                        self.problems.push(format!("hostile operation {} finished: {}", s.operation_id, s.message));
                    } else {
                        stats.hostile_failed += 1;
                    }
                }
                if s.message.is_empty() {
                    self.problems.push(format!("operation {} answered without a message", s.operation_id));
                }
                Vec::new()
            }
            Some(v1::event::Kind::Update(u)) => {
                let Some(status) = &u.status else { return Vec::new() };
                if let Ok(state) = task_state_from_proto("state", status.state) {
                    let agent = self.tasks.get(&status.task_id).map(|(_, a)| a.clone()).unwrap_or_default();
                    let agent = if status.agent_id.is_empty() { agent } else { status.agent_id.clone() };
                    self.tasks.insert(status.task_id.clone(), (state, agent));
                }
                if status.uuid.is_empty() {
                    return Vec::new();
                }
                vec![self.call(v1::call::Kind::Acknowledge(v1::call::Acknowledge {
                    agent_id: status.agent_id.clone(),
                    task_id: status.task_id.clone(),
                    uuid: status.uuid.clone(),
                }))]
            }
            _ => Vec::new(),
        }
    }

    fn tick(&mut self, ctx: &mut FrameworkCtx) -> Vec<v1::Call> {
        if ctx.rng.chance(if self.quiescing { 0.1 } else { 0.02 }) {
            return vec![self.reconcile()];
        }
        Vec::new()
    }

    fn on_disconnected(&mut self, _now: Duration) {
        // Operations in flight may never be answered.
        self.hostile.clear();
    }

    fn quiesce(&mut self, _ctx: &mut FrameworkCtx) -> Vec<v1::Call> {
        self.quiescing = true;
        vec![self.reconcile()]
    }

    fn check_step(&self) -> Result<(), String> {
        match self.problems.first() {
            Some(p) => Err(p.clone()),
            None => Ok(()),
        }
    }
}
