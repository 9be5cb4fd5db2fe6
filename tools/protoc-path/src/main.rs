//! Prints `PROTOC=<path>` and `PROTOC_INCLUDE=<path>` for a vendored protoc.

fn main() {
    match (
        protoc_bin_vendored::protoc_bin_path(),
        protoc_bin_vendored::include_path(),
    ) {
        (Ok(protoc), Ok(include)) => {
            println!("PROTOC={}", protoc.display());
            println!("PROTOC_INCLUDE={}", include.display());
        }
        (Err(err), _) | (_, Err(err)) => {
            eprintln!("ordo-protoc-path: no vendored protoc for this platform: {err}");
            std::process::exit(1);
        }
    }
}
