//! The merge property: a record stream split across N collectors (each with its own state
//! directory, snapshotted at random points), merged, gives the policies that one collector
//! over all records gives, and those are what `cordon discover` writes from the records.
//! (Exact while no workload reaches `--max-paths`, as here; past it, see the lifecycle's
//! `discover` module documentation.)

use std::path::PathBuf;

use cordon_collect::record::{from_line, Observed};
use cordon_collect::state::{load_discovery, Aggregates, Store};
use cordon_lifecycle::discover::{DiscoverOptions, Discovery};
use cordon_lifecycle::synthetic::Generator;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// A small seeded generator for the split (SplitMix64).
struct Random(u64);

impl Random {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % bound.max(1)
    }
}

fn scratch(name: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "cordon-collect-merge-{}-{name}",
        std::process::id()
    ));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn open(dir: &std::path::Path) -> anyhow::Result<Store> {
    Store::open(
        dir,
        300_000,
        Aggregates::new(DiscoverOptions::default(), None),
    )
}

fn policies_of(store: &Store) -> String {
    store.aggregates().discovery().clone().finish().to_yaml()
}

#[test]
fn split_across_collectors_then_merged_equals_one_collector_and_discover() -> Result<()> {
    for (case, (records, seed, collectors)) in [(3_000, 1, 2), (2_000, 7, 3), (4_000, 42, 5)]
        .into_iter()
        .enumerate()
    {
        let lines: Vec<String> = Generator::new(records, seed).map(|r| r.line).collect();
        let observed: Vec<Observed> = lines
            .iter()
            .filter_map(|line| from_line(line.as_bytes()).transpose())
            .collect::<std::result::Result<_, _>>()?;
        assert!(observed.len() > records, "the attacks are in the stream");
        assert!(observed.iter().any(Observed::denied), "denied records too");

        // `cordon discover` on the lines.
        let mut direct = Discovery::new(DiscoverOptions::default());
        for line in &lines {
            direct.add_line(line.as_bytes())?;
        }
        let expected = direct.finish().to_yaml();
        assert!(expected.contains("kind: AuthorizationPolicy"), "{expected}");

        // One collector over every record.
        let one_dir = scratch(&format!("{case}-one"))?;
        let mut one = open(&one_dir)?;
        for chunk in observed.chunks(64) {
            one.append(chunk, 0)?;
        }
        assert_eq!(policies_of(&one), expected, "case {case}: one collector");

        // N collectors, each record to a random one, in random-sized batches, with
        // snapshots at random points; then merged from their directories.
        let mut random = Random(seed);
        let dirs: Vec<PathBuf> = (0..collectors)
            .map(|index| scratch(&format!("{case}-part{index}")))
            .collect::<Result<_>>()?;
        let mut stores: Vec<Store> = dirs
            .iter()
            .map(|dir| open(dir))
            .collect::<anyhow::Result<_>>()?;
        let mut rest = observed.as_slice();
        while !rest.is_empty() {
            let size = (1 + random.below(40) as usize).min(rest.len());
            let (batch, after) = rest.split_at(size);
            rest = after;
            let target = random.below(collectors as u64) as usize;
            let Some(store) = stores.get_mut(target) else {
                unreachable!("the target is below the number of collectors");
            };
            store.append(batch, 0)?;
            if random.below(20) == 0 {
                store.begin_snapshot(0)?.write()?;
            }
        }
        drop(stores);
        let merged = load_discovery(&dirs, &DiscoverOptions::default())?;
        assert_eq!(merged.summary().records, observed.len() as u64);
        assert_eq!(
            merged.aggregate_entries(),
            one.aggregates().discovery().aggregate_entries()
        );
        assert_eq!(
            merged.finish().to_yaml(),
            expected,
            "case {case}: {collectors} collectors merged"
        );
        for dir in dirs.iter().chain([&one_dir]) {
            std::fs::remove_dir_all(dir)?;
        }
    }
    Ok(())
}

#[test]
fn a_reopened_store_holds_what_was_appended_and_drops_a_cut_short_last_line() -> Result<()> {
    let dir = scratch("reopen")?;
    let lines: Vec<String> = Generator::new(500, 3).map(|r| r.line).collect();
    let observed: Vec<Observed> = lines
        .iter()
        .filter_map(|line| from_line(line.as_bytes()).transpose())
        .collect::<std::result::Result<_, _>>()?;
    let (first, second) = observed.split_at(200);
    let before = {
        let mut store = open(&dir)?;
        store.append(first, 0)?;
        store.begin_snapshot(0)?.write()?;
        store.append(second, 0)?;
        policies_of(&store)
    };
    // A crash in the middle of a write: half a line at the end of the segment.
    let segment = std::fs::read_dir(&dir)?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.to_string_lossy().contains("wal-"))
        .max()
        .ok_or("no segment")?;
    std::fs::OpenOptions::new()
        .append(true)
        .open(&segment)?
        .write_all(b"{\"source\":{\"principal\":\"spi")?;
    let store = open(&dir)?;
    assert_eq!(store.aggregates().records(), observed.len() as u64);
    assert_eq!(policies_of(&store), before);
    assert_eq!(store.warnings().len(), 1, "{:?}", store.warnings());

    // A bad line that is not the last one is an error naming file and line.
    drop(store);
    let mut text = std::fs::read_to_string(&segment)?;
    text.push_str("\n{\"timed\":1}\n");
    std::fs::write(&segment, text)?;
    let error = open(&dir).err().ok_or("a bad line should be an error")?;
    assert!(error.to_string().contains("wal-"), "{error}");
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

use std::io::Write as _;

#[test]
fn a_snapshot_of_another_format_or_other_options_is_an_error_naming_the_file() -> Result<()> {
    let dir = scratch("formats")?;
    std::fs::write(
        dir.join("snapshot.jsonl"),
        "{\"snapshot\":1,\"wal_through\":0,\"alerts_total\":0}\n",
    )?;
    let error = open(&dir).err().ok_or("format 1 should be an error")?;
    let text = format!("{error:#}");
    assert!(text.contains("snapshot.jsonl:1"), "{text}");
    assert!(text.contains("format 1"), "{text}");

    std::fs::write(dir.join("snapshot.jsonl"), "{\"something\":\"else\"}\n")?;
    let error = open(&dir)
        .err()
        .ok_or("a foreign file should be an error")?;
    assert!(format!("{error:#}").contains("not a snapshot"), "{error:#}");

    // A state learned under other options is not merged into these.
    std::fs::remove_file(dir.join("snapshot.jsonl"))?;
    let lines: Vec<String> = Generator::new(100, 9).map(|r| r.line).collect();
    let observed: Vec<Observed> = lines
        .iter()
        .filter_map(|line| from_line(line.as_bytes()).transpose())
        .collect::<std::result::Result<_, _>>()?;
    let mut store = open(&dir)?;
    store.append(&observed, 0)?;
    store.begin_snapshot(0)?.write()?;
    drop(store);
    let other = DiscoverOptions {
        trust_domains: vec!["prod.example.org".to_string()],
        ..DiscoverOptions::default()
    };
    let error = load_discovery(std::slice::from_ref(&dir), &other)
        .err()
        .ok_or("other options should be an error")?;
    let text = format!("{error:#}");
    assert!(text.contains("snapshot.jsonl"), "{text}");
    assert!(text.contains("trust_domains"), "{text}");
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
