//! Generates the Rust types and gRPC stubs from `blit/v1/*.proto`, with a vendored `protoc`
//! so a fresh machine needs nothing installed.

const PROTOS: &[&str] = &[
    "blit/v1/types.proto",
    "blit/v1/session.proto",
    "blit/v1/admin.proto",
    "blit/v1/jobs.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure().compile_with_config(config, PROTOS, &["."])?;
    Ok(())
}
