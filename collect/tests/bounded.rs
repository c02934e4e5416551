//! Bounded state: the collector keeps the aggregates `discover` builds, so ID-rich paths
//! (every request distinct) do not grow it. 20,000 requests to `/orders/<id>` with
//! distinct ids give a snapshot no larger than 2,000 do, under a fixed bound, and the
//! policies still template them; names a template keeps literal (`/users/alice`) are
//! generalized once a workload reaches `--max-paths`, so they stay bounded too.

use std::path::{Path, PathBuf};

use cordon_collect::record::Observed;
use cordon_collect::state::{Aggregates, Store, SNAPSHOT};
use cordon_engine::TrafficRecord;
use cordon_lifecycle::discover::DiscoverOptions;
use cordon_lifecycle::synthetic::literal_name;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn scratch(name: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "cordon-collect-bounded-{}-{name}",
        std::process::id()
    ));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn request(caller: &str, app: &str, path: String, time: i64) -> Observed {
    Observed {
        record: TrafficRecord {
            principal: Some(format!("spiffe://cluster.local/ns/shop/sa/{caller}")),
            destination_namespace: Some("shop".into()),
            destination_labels: [("app".to_string(), app.to_string())].into(),
            destination_port: Some(8080),
            mtls: Some(true),
            method: Some("GET".into()),
            path: Some(path),
            host: Some(format!("{app}.shop")),
            ..TrafficRecord::default()
        },
        time: Some(time),
        decision: None,
        node: None,
    }
}

/// Feeds `count` requests (the path of each from `path`) in batches of 100, writes a
/// snapshot, and returns its size, the state directory's size, and `/policies`.
fn run(
    dir: &Path,
    options: DiscoverOptions,
    count: usize,
    path: impl Fn(usize) -> String,
) -> Result<(u64, u64, String, usize)> {
    let mut store = Store::open(dir, 300_000, Aggregates::new(options, None))?;
    let mut largest = 0;
    let requests: Vec<Observed> = (0..count)
        .map(|index| {
            request(
                if index % 2 == 0 {
                    "frontend"
                } else {
                    "checkout"
                },
                "orders",
                path(index),
                1_764_205_200_000 + index as i64,
            )
        })
        .collect();
    for batch in requests.chunks(100) {
        store.append(batch, 0)?;
        largest = largest.max(store.aggregates().discovery().aggregate_entries());
    }
    store.begin_snapshot(0)?.write()?;
    let snapshot = std::fs::metadata(dir.join(SNAPSHOT))?.len();
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        total += entry?.metadata()?.len();
    }
    let policies = store.aggregates().discovery().clone().finish().to_yaml();
    assert_eq!(store.aggregates().records(), count as u64);
    Ok((snapshot, total, policies, largest))
}

#[test]
fn distinct_ids_do_not_grow_the_state() -> Result<()> {
    let orders = |index: usize| format!("/orders/{}", 1_000_003 + index * 7919);
    let small_dir = scratch("orders-2k")?;
    let (small, _, small_policies, _) = run(&small_dir, DiscoverOptions::default(), 2_000, orders)?;
    let large_dir = scratch("orders-20k")?;
    let (large, directory, policies, largest) =
        run(&large_dir, DiscoverOptions::default(), 20_000, orders)?;
    // Ten times the ids, the same snapshot but for the digits of the counts and times.
    assert!(
        large <= small + 64,
        "{large} bytes for 20,000 ids, {small} for 2,000"
    );
    assert!(large < 8 * 1024, "{large} bytes");
    assert!(
        directory < 8 * 1024,
        "the segments are gone after the snapshot: {directory}"
    );
    assert_eq!(largest, 2, "one entry per caller: {largest}");
    assert!(policies.contains("\"/orders/{*}\""), "{policies}");
    assert!(policies.contains("20000 requests"), "{policies}");
    assert!(
        small_policies.contains("\"/orders/{*}\""),
        "{small_policies}"
    );

    // Names templating keeps literal: bounded by --max-paths, and still `{*}`.
    let options = DiscoverOptions {
        max_paths: 1_000,
        ..DiscoverOptions::default()
    };
    let users = |index: usize| format!("/users/{}", literal_name(index));
    let names_dir = scratch("names")?;
    let (names, _, policies, largest) = run(&names_dir, options.clone(), 20_000, users)?;
    assert!(largest <= 1_000, "{largest} entries");
    assert!(names < 200 * 1024, "{names} bytes");
    assert!(policies.contains("\"/users/{*}\""), "{policies}");
    let more_dir = scratch("more-names")?;
    let (more, _, _, largest) = run(&more_dir, options, 40_000, users)?;
    assert!(largest <= 1_000, "{largest} entries");
    assert!(more < 200 * 1024, "{more} bytes for 40,000 names");
    for dir in [small_dir, large_dir, names_dir, more_dir] {
        std::fs::remove_dir_all(dir)?;
    }
    Ok(())
}
