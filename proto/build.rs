//! Compiles `proto/weir/v1/*.proto` with protox (pure Rust), so building
//! Weir never needs `protoc` installed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/weir/v1/weir.proto"];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Hand-written in lib.rs: a secret's value never reaches a log.
        .skip_debug([".weir.v1.Secret"])
        .compile_fds(descriptors)?;
    Ok(())
}
