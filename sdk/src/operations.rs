//! Typed builders for the resource operations of an ACCEPT: RESERVE,
//! UNRESERVE, CREATE, DESTROY, GROW, SHRINK, SYNC (and LAUNCH), each with the
//! caller's id so a retry is recognised, and each answered by an
//! `OperationStatus` event on the stream.

use weir_model::{ReservationId, Resources, VolumeId};
use weir_proto::{convert, v1};

fn with_id(id: &str, kind: v1::operation::Kind) -> v1::Operation {
    v1::Operation { id: id.to_owned(), kind: Some(kind), ..Default::default() }
}

/// RESERVE `resources` (unreserved ones of the offer) for the offer's role.
pub fn reserve(op_id: &str, reservation: &ReservationId, resources: &Resources, principal: &str) -> v1::Operation {
    with_id(
        op_id,
        v1::operation::Kind::Reserve(v1::operation::Reserve {
            reservation_id: reservation.to_string(),
            principal: principal.to_owned(),
            resources: convert::resources_to_proto(&weir_model::ResourceSet::unreserved(resources.clone())),
            ..Default::default()
        }),
    )
}

pub fn unreserve(op_id: &str, reservation: &ReservationId) -> v1::Operation {
    with_id(op_id, v1::operation::Kind::Unreserve(v1::operation::Unreserve { reservation_id: reservation.to_string() }))
}

/// CREATE a volume of `size_mib` on a reservation's disk, seen by tasks at
/// `container_path` (relative to their sandbox).
pub fn create_volume(
    op_id: &str,
    volume: &VolumeId,
    reservation: &ReservationId,
    size_mib: f64,
    container_path: &str,
    shared: bool,
) -> v1::Operation {
    create(op_id, volume, reservation, size_mib, container_path, shared, "")
}

/// CREATE a volume like [`create_volume`] whose copy is kept at `backing`
/// (`hdfs://…`). If the backing already holds this volume's copy (it lived
/// on another agent that is gone), the agent restores it before any task
/// that mounts it starts. Answered OPERATION_PENDING, then FINISHED or
/// FAILED (an unreachable NameNode, a backing of another volume) once the
/// agent has attached it.
pub fn create_backed_volume(
    op_id: &str,
    volume: &VolumeId,
    reservation: &ReservationId,
    size_mib: f64,
    container_path: &str,
    backing: &str,
) -> v1::Operation {
    create(op_id, volume, reservation, size_mib, container_path, false, backing)
}

/// The CREATE both of the above make (`backing` empty: none).
fn create(
    op_id: &str,
    volume: &VolumeId,
    reservation: &ReservationId,
    size_mib: f64,
    container_path: &str,
    shared: bool,
    backing: &str,
) -> v1::Operation {
    with_id(
        op_id,
        v1::operation::Kind::Create(v1::operation::Create {
            volume_id: volume.to_string(),
            reservation_id: reservation.to_string(),
            size: size_mib,
            container_path: container_path.to_owned(),
            shared,
            principal: String::new(),
            backing: backing.to_owned(),
        }),
    )
}

/// SYNC a backed volume to its backing now (PENDING, then FINISHED with
/// the bytes and files copied, or FAILED).
pub fn sync_volume(op_id: &str, volume: &VolumeId) -> v1::Operation {
    with_id(op_id, v1::operation::Kind::Sync(v1::operation::Sync { volume_id: volume.to_string() }))
}

pub fn destroy_volume(op_id: &str, volume: &VolumeId) -> v1::Operation {
    with_id(op_id, v1::operation::Kind::Destroy(v1::operation::Destroy { volume_id: volume.to_string() }))
}

pub fn grow_volume(op_id: &str, volume: &VolumeId, by_mib: f64) -> v1::Operation {
    with_id(op_id, v1::operation::Kind::Grow(v1::operation::Grow { volume_id: volume.to_string(), size: by_mib }))
}

pub fn shrink_volume(op_id: &str, volume: &VolumeId, by_mib: f64) -> v1::Operation {
    with_id(op_id, v1::operation::Kind::Shrink(v1::operation::Shrink { volume_id: volume.to_string(), size: by_mib }))
}

pub fn launch(tasks: Vec<v1::TaskInfo>) -> v1::Operation {
    v1::Operation { kind: Some(v1::operation::Kind::Launch(v1::operation::Launch { tasks })), ..Default::default() }
}

/// Mounts a volume into a task (empty `container_path`: the volume's own).
pub fn mount(task: &mut v1::TaskInfo, volume: &VolumeId, container_path: &str, read_only: bool) {
    task.volumes.push(v1::VolumeMount { volume_id: volume.to_string(), container_path: container_path.to_owned(), read_only });
}

/// Whether a status says its operation finished.
pub fn finished(status: &v1::OperationStatus) -> bool {
    status.state == v1::OperationState::OperationFinished as i32
}
