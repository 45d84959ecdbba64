//! Compiles the YARN records and protocol messages (package hadoop.yarn)
//! with protox. They refer to hadoop.common (`TokenProto`), which lives in
//! weir-yarn-ipc: an extern path, so there is one `TokenProto` type.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/yarn/yarn_protos.proto",
        "proto/yarn/yarn_service_protos.proto",
        "proto/yarn/yarn_security_token.proto",
        "proto/yarn/applicationclient_protocol.proto",
        "proto/yarn/server/yarn_server_resourcemanager_service_protos.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let hadoop = std::path::Path::new("../ipc/proto");
    println!("cargo:rerun-if-changed=../ipc/proto/hadoop");
    prost_build::Config::new()
        .extern_path(".hadoop.common", "::weir_yarn_ipc::proto")
        .compile_fds(protox::compile(files, [std::path::Path::new("proto"), hadoop])?)?;
    Ok(())
}
