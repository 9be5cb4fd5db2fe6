//! Compiles `proto/` with protox (pure Rust, no system protoc) into one
//! descriptor set, which drives code generation and is embedded for gRPC
//! server reflection.

use std::path::PathBuf;

const PROTO_FILES: &[&str] = &[
    "ordo/order/v1/order.proto",
    "ordo/events/v1/events.proto",
    "ordo/payments/v1/payments.proto",
    "ordo/processor/v1/processor.proto",
    "ordo/outbox/v1/outbox.proto",
    "ordo/operator/v1/operator.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    println!("cargo:rerun-if-changed={}", proto_root.display());

    let mut compiler = protox::Compiler::new([&proto_root])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(PROTO_FILES)?;
    let descriptors = compiler.file_descriptor_set();

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("ordo_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(descriptors)?;
    Ok(())
}
