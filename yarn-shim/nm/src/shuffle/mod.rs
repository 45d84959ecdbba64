//! MapReduce's `mapreduce_shuffle` auxiliary service.

/// The service's name in yarn.nodemanager.aux-services and in
/// `service_data` / `services_meta_data`.
pub const SERVICE_NAME: &str = "mapreduce_shuffle";
