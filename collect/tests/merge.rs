//! The merge property: a record stream split across N collectors (each with its own state
//! directory, snapshotted at random points), merged, gives the policies that one collector
//! over all records gives, and those are what `cordon discover` writes from the records.

use std::path::PathBuf;

use cordon_collect::record::{from_line, Observed};
use cordon_collect::state::{load_tables, Store, Table};
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

fn policies_of_table(table: &Table) -> Result<String> {
    let mut discovery = Discovery::new(DiscoverOptions::default());
    Table::discover(&table.entries(), &mut discovery)?;
    Ok(discovery.finish().to_yaml())
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
        let mut one = Store::open(&one_dir, 300_000)?;
        for chunk in observed.chunks(64) {
            one.append(chunk, 0)?;
        }
        assert_eq!(
            policies_of_table(one.table())?,
            expected,
            "case {case}: one collector"
        );

        // N collectors, each record to a random one, in random-sized batches, with
        // snapshots at random points; then merged from their directories.
        let mut random = Random(seed);
        let dirs: Vec<PathBuf> = (0..collectors)
            .map(|index| scratch(&format!("{case}-part{index}")))
            .collect::<Result<_>>()?;
        let mut stores: Vec<Store> = dirs
            .iter()
            .map(|dir| Store::open(dir, 300_000))
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
        let merged = load_tables(&dirs)?;
        assert_eq!(merged.records(), one.table().records());
        assert_eq!(merged.distinct(), one.table().distinct());
        assert_eq!(
            policies_of_table(&merged)?,
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
        let mut store = Store::open(&dir, 300_000)?;
        store.append(first, 0)?;
        store.begin_snapshot(0)?.write()?;
        store.append(second, 0)?;
        policies_of_table(store.table())?
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
        .write_all(b"{\"timed\":1,\"untimed\":0,\"fi")?;
    let store = Store::open(&dir, 300_000)?;
    assert_eq!(store.table().records(), observed.len() as u64);
    assert_eq!(policies_of_table(store.table())?, before);
    assert_eq!(store.warnings().len(), 1, "{:?}", store.warnings());

    // A bad line that is not the last one is an error naming file and line.
    drop(store);
    let mut text = std::fs::read_to_string(&segment)?;
    text.push_str("\n{\"timed\":1}\n");
    std::fs::write(&segment, text)?;
    let error = Store::open(&dir, 300_000)
        .err()
        .ok_or("a bad line should be an error")?;
    assert!(error.to_string().contains("wal-"), "{error}");
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

use std::io::Write as _;
