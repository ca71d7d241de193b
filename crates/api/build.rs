fn main() {
    // protoc comes from a crates.io package, so a fresh machine needs nothing installed.
    if std::env::var_os("PROTOC").is_none() {
        let protoc = protoc_bin_vendored::protoc_bin_path().expect("vendored protoc");
        std::env::set_var("PROTOC", protoc);
    }
    println!("cargo:rerun-if-changed=../../proto/kbgp.proto");
    tonic_prost_build::configure()
        .type_attribute(".", "#[derive(serde::Serialize)]")
        .compile_protos(&["../../proto/kbgp.proto"], &["../../proto"])
        .expect("compile kbgp.proto");
}
