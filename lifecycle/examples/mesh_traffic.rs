//! Writes generated mesh traffic (JSONL, with the attackers' decision-log lines) to standard
//! output, for benchmarking `cordon discover` and trying the lifecycle tools:
//!
//! ```sh
//! cargo run --release -p cordon-lifecycle --example mesh_traffic -- 1000000 > /tmp/mesh.jsonl
//! ```
//!
//! Arguments: the number of legitimate records (default 100000) and the seed (default 1).

use std::io::{BufWriter, Write};

fn main() -> std::io::Result<()> {
    let mut arguments = std::env::args().skip(1);
    let count = arguments
        .next()
        .and_then(|text| text.parse().ok())
        .unwrap_or(100_000);
    let seed = arguments
        .next()
        .and_then(|text| text.parse().ok())
        .unwrap_or(1);
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 20, stdout.lock());
    for record in cordon_lifecycle::synthetic::Generator::new(count, seed) {
        out.write_all(record.line.as_bytes())?;
        out.write_all(b"\n")?;
    }
    out.flush()
}
