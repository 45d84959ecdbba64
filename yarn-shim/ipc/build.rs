//! Compiles Hadoop's IPC-layer `.proto` files (package hadoop.common) with
//! protox (pure Rust), so building never needs `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/hadoop/RpcHeader.proto",
        "proto/hadoop/ProtobufRpcEngine2.proto",
        "proto/hadoop/IpcConnectionContext.proto",
        "proto/hadoop/Security.proto",
        "proto/hadoop/HAServiceProtocol.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    prost_build::Config::new().compile_fds(protox::compile(files, ["proto"])?)?;
    Ok(())
}
