//! Generates the tonic/prost code from proto/ with protox, a pure-Rust
//! protobuf compiler, so that `cargo build` needs no system `protoc`.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(
        [
            "sealgate/v1/gateway.proto",
            "sealgate/v1/admin.proto",
            "sealgate/v1/enrollment.proto",
        ],
        ["proto"],
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .bytes(".sealgate.v1")
        .compile_fds(fds)?;
    Ok(())
}
