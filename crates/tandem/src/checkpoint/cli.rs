//! `tandem checkpoint list | inspect ID | verify [ID] | restore ID`: the
//! operator's view of a data directory's checkpoints, offline.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use super::file::{self, Listed};
use super::format::{decode_chunk, FileReader, FormatError, Header, Kind, Totals};
use super::restore::load_newest;
use crate::store::Keyspace;

/// A progress bar on stderr, drawn only when stderr is a terminal.
pub struct ProgressBar {
    label: String,
    total: u64,
    started: Instant,
    drawn: Option<Instant>,
    visible: bool,
}

impl ProgressBar {
    /// A bar for `total` bytes.
    pub fn new(label: impl Into<String>, total: u64) -> ProgressBar {
        let visible = std::io::stderr().is_terminal();
        ProgressBar { label: label.into(), total: total.max(1), started: Instant::now(), drawn: None, visible }
    }

    /// Shows `done` of the total, at most ten times a second.
    pub fn update(&mut self, done: u64) {
        if !self.visible || self.drawn.is_some_and(|drawn| drawn.elapsed() < Duration::from_millis(100)) {
            return;
        }
        self.drawn = Some(Instant::now());
        let fraction = (done as f64 / self.total as f64).min(1.0);
        let filled = (fraction * 30.0) as usize;
        let rate = done as f64 / self.started.elapsed().as_secs_f64().max(1e-3) / 1e6;
        eprint!(
            "\r{} [{}{}] {:>3.0}% {rate:.0} MB/s",
            self.label,
            "#".repeat(filled),
            ".".repeat(30 - filled),
            fraction * 100.0
        );
        let _ = std::io::stderr().flush();
    }

    /// Clears the bar.
    pub fn finish(&mut self) {
        if self.visible && self.drawn.is_some() {
            eprint!("\r{}\r", " ".repeat(self.label.len() + 50));
        }
    }
}

/// Reads and checks every byte of one file (checksums, bucket placement, counts).
pub fn verify_file(path: &Path, bar: &mut ProgressBar) -> Result<(Header, Totals), FormatError> {
    let mut reader = FileReader::open(path)?;
    let mut keys = 0u64;
    while let Some(chunk) = reader.next_chunk()? {
        keys += decode_chunk(path, &chunk)?.iter().map(|(_, bucket)| bucket.len() as u64).sum::<u64>();
        bar.update(reader.offset());
    }
    let totals = reader.totals();
    if keys != totals.keys {
        return Err(FormatError::Corrupt {
            path: path.to_path_buf(),
            detail: format!("footer counts {} keys, the body holds {keys}", totals.keys),
        });
    }
    Ok((reader.header().clone(), totals))
}

fn listing(data_dir: &Path) -> Result<Vec<Listed>, String> {
    file::list(&file::directory(data_dir)).map_err(|error| error.to_string())
}

fn find(data_dir: &Path, id: u64) -> Result<Listed, String> {
    listing(data_dir)?
        .into_iter()
        .find(|listed| listed.id == id)
        .ok_or_else(|| format!("no checkpoint {id} in {}", file::directory(data_dir).display()))
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("tandem: {message}");
    ExitCode::FAILURE
}

/// `tandem checkpoint list`: one line per file, from its header.
pub fn list(data_dir: &Path) -> ExitCode {
    let listed = match listing(data_dir) {
        Ok(listed) => listed,
        Err(error) => return fail(error),
    };
    println!(
        "{:>6}  {:<11}  {:>6}  {:>12}  {:>10}  {:>13}  {:>5}  created (unix ms)",
        "id", "kind", "base", "log index", "keys", "bytes", "node"
    );
    for entry in listed {
        let bytes = std::fs::metadata(&entry.path).map_or(0, |metadata| metadata.len());
        match FileReader::open(&entry.path) {
            Ok(reader) => {
                let header = reader.header();
                let base = header.base_id.map_or("-".to_string(), |base| base.to_string());
                println!(
                    "{:>6}  {:<11}  {base:>6}  {:>12}  {:>10}  {bytes:>13}  {:>5}  {}",
                    header.id,
                    header.kind.as_str(),
                    header.log_index,
                    header.key_count,
                    header.node,
                    header.created_unix_ms
                );
            }
            Err(error) => println!("{:>6}  {:<11}  unreadable header: {error}", entry.id, entry.kind.as_str()),
        }
    }
    ExitCode::SUCCESS
}

/// `tandem checkpoint inspect ID`: the header, then a full verification.
pub fn inspect(data_dir: &Path, id: u64) -> ExitCode {
    let entry = match find(data_dir, id) {
        Ok(entry) => entry,
        Err(error) => return fail(error),
    };
    let header = match FileReader::open(&entry.path) {
        Ok(reader) => reader.header().clone(),
        Err(error) => return fail(error),
    };
    println!("file:            {}", entry.path.display());
    println!("id:              {}", header.id);
    println!("kind:            {}", header.kind.as_str());
    println!("base:            {}", header.base_id.map_or("-".into(), |base| base.to_string()));
    println!("node:            {}", header.node);
    println!("epoch:           {}", header.epoch);
    println!("log index:       {}", header.log_index);
    println!("created unix ms: {}", header.created_unix_ms);
    println!("keys in state:   {}", header.key_count);
    println!("applied vector:  {:?}", header.applied);
    println!("channel states:  {}", header.channels.len());
    let bytes = std::fs::metadata(&entry.path).map_or(0, |metadata| metadata.len());
    let mut bar = ProgressBar::new("verifying", bytes);
    let verified = verify_file(&entry.path, &mut bar);
    bar.finish();
    match verified {
        Ok((_, totals)) => {
            println!(
                "body:            {} chunks, {} buckets, {} keys, {} bytes",
                totals.chunks, totals.buckets, totals.keys, totals.bytes
            );
            println!("verified:        ok");
            ExitCode::SUCCESS
        }
        Err(error) => fail(format!("verification failed: {error}")),
    }
}

/// `tandem checkpoint verify [ID]`: every byte of one file or of all of them.
pub fn verify(data_dir: &Path, id: Option<u64>) -> ExitCode {
    let entries = match id {
        Some(id) => find(data_dir, id).map(|entry| vec![entry]),
        None => listing(data_dir),
    };
    let entries = match entries {
        Ok(entries) => entries,
        Err(error) => return fail(error),
    };
    let mut bad = 0;
    for entry in &entries {
        let bytes = std::fs::metadata(&entry.path).map_or(0, |metadata| metadata.len());
        let mut bar = ProgressBar::new(format!("verifying {}", entry.id), bytes);
        let verified = verify_file(&entry.path, &mut bar);
        bar.finish();
        match verified {
            Ok((header, totals)) => println!(
                "ok   {} ({} at log index {}, {} keys, {} bytes)",
                entry.path.display(),
                header.kind.as_str(),
                header.log_index,
                totals.keys,
                totals.bytes
            ),
            Err(error) => {
                bad += 1;
                println!("BAD  {}: {error}", entry.path.display());
            }
        }
    }
    if entries.is_empty() {
        println!("no checkpoints in {}", file::directory(data_dir).display());
    }
    if bad > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// The files of checkpoint `id`'s chain: its full checkpoint first.
fn chain_of(from: &Path, id: u64) -> Result<Vec<(Listed, Header)>, String> {
    let listed = listing(from)?;
    let mut chain = Vec::new();
    let mut wanted = Some(id);
    while let Some(id) = wanted {
        let entry = listed.iter().find(|entry| entry.id == id).ok_or_else(|| format!("checkpoint {id} is missing"))?;
        let header = FileReader::open(&entry.path).map_err(|error| error.to_string())?.header().clone();
        wanted = header.base_id;
        chain.push((entry.clone(), header));
    }
    chain.reverse();
    if chain[0].1.kind != Kind::Full {
        return Err(format!("the chain of checkpoint {id} does not start with a full checkpoint"));
    }
    Ok(chain)
}

/// `tandem checkpoint restore ID --from SRC --data-dir DIR`: copies
/// checkpoint `id` and the chain it builds on from `from` into the empty,
/// offline data directory `data_dir`, verifying every byte; a node started
/// there resumes from that state, its log continuing after the checkpoint.
pub fn restore(from: &Path, id: u64, data_dir: &Path) -> ExitCode {
    match restore_chain(from, id, data_dir) {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(error) => fail(error),
    }
}

fn restore_chain(from: &Path, id: u64, data_dir: &Path) -> Result<String, String> {
    let chain = chain_of(from, id)?;
    let target = file::directory(data_dir);
    let log_dir = crate::db::log_dir(data_dir);
    let occupied = |dir: &PathBuf| std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some());
    if occupied(&target) || occupied(&log_dir) {
        return Err(format!(
            "{} already holds checkpoints or a log; restore into an empty data directory of a stopped node",
            data_dir.display()
        ));
    }
    file::ensure_directory(&target).map_err(|error| error.to_string())?;
    for (entry, _) in &chain {
        let name = entry.path.file_name().expect("listed files have names");
        let temporary = target.join(format!("{}.tmp", name.to_string_lossy()));
        std::fs::copy(&entry.path, &temporary).map_err(|error| format!("copy {}: {error}", entry.path.display()))?;
        std::fs::File::open(&temporary)
            .and_then(|copied| copied.sync_all())
            .and_then(|()| std::fs::rename(&temporary, target.join(name)))
            .map_err(|error| format!("install {}: {error}", temporary.display()))?;
    }
    file::sync_directory(&target).map_err(|error| error.to_string())?;
    // Load exactly what a starting node will load: the copies, every byte checked.
    let node = chain[0].1.node;
    let total: u64 = chain.iter().map(|(entry, _)| std::fs::metadata(&entry.path).map_or(0, |m| m.len())).sum();
    let mut bar = ProgressBar::new("restoring", total);
    let started = Instant::now();
    let mut keyspace = Keyspace::new();
    let loaded = load_newest(&target, node, &mut keyspace, &mut |bytes| bar.update(bytes));
    bar.finish();
    let loaded = loaded.map_err(|error| error.to_string())?;
    if loaded.chain.last().map(|tip| tip.id) != Some(id) {
        let _ = std::fs::remove_dir_all(&target);
        let reasons: Vec<String> =
            loaded.skipped.iter().map(|skip| format!("{}: {}", skip.path.display(), skip.reason)).collect();
        return Err(format!("checkpoint {id} does not verify; nothing restored ({})", reasons.join("; ")));
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok(format!(
        "restored checkpoint {id} ({} files, {} keys, state at log index {}) into {} in {elapsed:.2} s ({:.0} MB/s); \
         start it as node {node}: `tandem server --data-dir {}`",
        chain.len(),
        keyspace.len(),
        loaded.log_index(),
        data_dir.display(),
        total as f64 / elapsed.max(1e-6) / 1e6,
        data_dir.display()
    ))
}
