//! Writes the generated mesh's AuthorizationPolicies (a JSON array) to standard output, for
//! benchmarking `cordon blast-radius` (`scripts/blast-radius-bench.sh`):
//!
//! ```sh
//! cargo run --release -p cordon-lifecycle --example mesh_policies -- 60 > /tmp/mesh-3000.json
//! ```
//!
//! Arguments: the number of namespaces (default 60; 50 policies each, so 60 give 3,000) and
//! the seed (default 1). See `cordon_lifecycle::blast_radius::mesh`.

use std::io::Write;

fn main() -> std::io::Result<()> {
    let mut arguments = std::env::args().skip(1);
    let namespaces = arguments
        .next()
        .and_then(|text| text.parse().ok())
        .unwrap_or(60);
    let seed = arguments
        .next()
        .and_then(|text| text.parse().ok())
        .unwrap_or(1);
    let policies = cordon_lifecycle::blast_radius::mesh::policies(namespaces, seed);
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &policies)?;
    out.write_all(b"\n")
}
