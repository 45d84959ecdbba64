//! Compiles the `.proto` files under `proto/` with protox (pure Rust), so
//! building the shim never needs `protoc`. `hadoop/` holds the IPC layer's
//! messages (package hadoop.common), `yarn/` the YARN records and protocol
//! messages (package hadoop.yarn), which refer to the former.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/hadoop/RpcHeader.proto",
        "proto/hadoop/ProtobufRpcEngine2.proto",
        "proto/hadoop/IpcConnectionContext.proto",
        "proto/hadoop/Security.proto",
        "proto/yarn/yarn_protos.proto",
        "proto/yarn/yarn_service_protos.proto",
        "proto/yarn/yarn_security_token.proto",
        "proto/yarn/applicationclient_protocol.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    // Two passes: hadoop.common on its own (`crate::proto`), then hadoop.yarn
    // with hadoop.common as an extern path, so the YARN records refer to
    // `crate::proto::TokenProto` instead of a module path relative to theirs.
    prost_build::Config::new().compile_fds(protox::compile(&files[..4], ["proto"])?)?;
    prost_build::Config::new()
        .extern_path(".hadoop.common", "crate::proto")
        .compile_fds(protox::compile(&files[4..], ["proto"])?)?;
    Ok(())
}
