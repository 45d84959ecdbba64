//! Compiles the Hadoop IPC `.proto` files under `proto/hadoop/` with protox
//! (pure Rust), so building the shim never needs `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/hadoop/RpcHeader.proto",
        "proto/hadoop/ProtobufRpcEngine2.proto",
        "proto/hadoop/IpcConnectionContext.proto",
        "proto/hadoop/Security.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
