//! Generates the tonic/prost code from proto/ with protox, a pure-Rust
//! protobuf compiler, so that `cargo build` needs no system `protoc`.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(
        [
            "sealgate/v1/gateway.proto",
            "sealgate/v1/admin.proto",
            "sealgate/v1/audit.proto",
            "sealgate/v1/enrollment.proto",
        ],
        ["proto"],
    )?;
    // Served by gRPC reflection on the gateway's port (`grpcurl list`):
    // exactly what was compiled, less the enrollment service, which has a
    // listener of its own.
    let mut served = fds.clone();
    served
        .file
        .retain(|f| f.name() != "sealgate/v1/enrollment.proto");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("sealgate_descriptor.bin"),
        prost::Message::encode_to_vec(&served),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .bytes(".sealgate.v1")
        .compile_fds(fds)?;
    Ok(())
}
