//! Checking an archive: every named file against its manifest entry and checksums, and
//! the continuity from a checkpoint chain through the archived records — `tandem archive
//! verify`, and the plan `restore` follows.
//!
//! The *last consistent index* is how far a restore can go: the newest checkpoint chain
//! whose every file verifies, then archived records with contiguous indexes and intact
//! checksums, up to the first damage or gap. Damage is never skipped over: records after
//! it are not used even if intact, since the state would miss the damaged ones.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::manifest::{self, Entry, FileKind, Manifest, CHECKPOINTS_DIRECTORY, SEGMENTS_DIRECTORY};
use super::segment;

/// The problem with one archived file, in words.
pub type Problem = String;

/// An archived file opened while it was checked. It stays readable after the shipper
/// removes it (a newer manifest superseded it), so a restore never loses a file it planned with.
pub type Handle = Arc<File>;

/// The outcome of checking one archived file.
#[derive(Debug)]
pub struct Checked {
    /// The file, open; `None` if it could not be opened.
    pub file: Option<Handle>,
    /// `Ok`, or the problem and, for a segment, the intact records before it.
    pub result: Result<(), (Problem, Option<segment::Parsed>)>,
}

/// Checks one archived file: present, the manifest's size and CRC32C, and its contents
/// (a segment's frames and indexes, a checkpoint's chunks and header).
pub fn check_entry(archive: &Path, entry: &Entry) -> Checked {
    let path = entry.path(archive);
    let opened = File::open(&path).and_then(|file| super::read_whole(&file).map(|bytes| (file, bytes)));
    let (file, bytes) = match opened {
        Ok(opened) => opened,
        Err(error) => return Checked { file: None, result: Err((format!("{}: {error}", path.display()), None)) },
    };
    let result = match entry.kind {
        FileKind::Segment => check_segment(&path, entry, &bytes),
        FileKind::Checkpoint => check_checkpoint(&path, entry, &bytes).map_err(|problem| (problem, None)),
    };
    Checked { file: Some(Arc::new(file)), result }
}

fn check_segment(path: &Path, entry: &Entry, bytes: &[u8]) -> Result<(), (Problem, Option<segment::Parsed>)> {
    let mut parsed = segment::parse(bytes);
    let problem = match &parsed.problem {
        Some((offset, reason)) => Some(format!("{} at byte offset {offset}: {reason}", path.display())),
        None if parsed.first_index != entry.first_index => Some(format!(
            "{}: starts at index {}, the manifest says {}",
            path.display(),
            parsed.first_index,
            entry.first_index
        )),
        None if parsed.frames.last().map(|frame| frame.index) != Some(entry.last_index) => Some(format!(
            "{}: ends at index {}, the manifest says {}",
            path.display(),
            parsed.frames.last().map_or(0, |frame| frame.index),
            entry.last_index
        )),
        None if bytes.len() as u64 != entry.bytes || crc32c::crc32c(bytes) != entry.crc32c => {
            Some(format!("{}: size or crc32c differs from the manifest", path.display()))
        }
        None => None,
    };
    match problem {
        None => Ok(()),
        Some(problem) => {
            // Use only records the manifest also vouches for, from the first index it names.
            if parsed.first_index != entry.first_index {
                parsed.frames.clear();
            }
            parsed.frames.retain(|frame| frame.index <= entry.last_index);
            Err((problem, Some(parsed)))
        }
    }
}

fn check_checkpoint(path: &Path, entry: &Entry, bytes: &[u8]) -> Result<(), Problem> {
    if bytes.len() as u64 != entry.bytes || crc32c::crc32c(bytes) != entry.crc32c {
        return Err(format!("{}: size or crc32c differs from the manifest", path.display()));
    }
    let header = super::check_checkpoint(path).map_err(|error| error.to_string())?;
    let info =
        entry.checkpoint.as_ref().ok_or_else(|| format!("{}: a checkpoint entry without details", path.display()))?;
    if header.id != info.id || header.log_index != entry.first_index || header.kind.as_str() != info.level {
        return Err(format!("{}: its header disagrees with the manifest", path.display()));
    }
    Ok(())
}

/// What a restore to some target would use, after checking every file it needs.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// The checkpoint chain to copy, full first (empty: the log from index 1).
    pub chain: Vec<(Entry, Handle)>,
    /// The segments to copy, each with the last index to take from it.
    pub segments: Vec<(Entry, u64, Handle)>,
    /// The index the chain is the state of (0 without a chain).
    pub base_index: u64,
    /// The last consistent index: where a restore following this plan ends.
    pub last_index: u64,
    /// Damage met on the way (skipped checkpoints; what stopped the records).
    pub problems: Vec<Problem>,
    /// Why the plan ends before the target or the manifest's end, if it does.
    pub stopped: Option<Problem>,
}

/// Plans a restore of `manifest`'s archive up to `target` (the end when `None`).
pub fn plan(archive: &Path, manifest: &Manifest, target: Option<u64>) -> Result<Plan, Problem> {
    let target = target.unwrap_or(u64::MAX);
    let mut plan = Plan::default();
    choose_chain(archive, manifest, target, &mut plan);
    if plan.chain.is_empty() {
        let starts_at_one = manifest.segments.first().is_some_and(|first| first.first_index == 1);
        if !starts_at_one && target > 0 && !manifest.segments.is_empty() {
            return Err(format!(
                "no usable checkpoint at or before index {} and the archived log starts at index {}: nothing to \
                 restore from{}",
                if target == u64::MAX { manifest.last_index() } else { target },
                manifest.segments.first().map_or(0, |first| first.first_index),
                describe(&plan.problems)
            ));
        }
    }
    follow_segments(archive, manifest, target, &mut plan);
    Ok(plan)
}

/// The newest chain whose files verify, cut at `target`.
fn choose_chain(archive: &Path, manifest: &Manifest, target: u64, plan: &mut Plan) {
    for full in manifest.checkpoints.iter().rev().filter(|entry| entry.is_full_checkpoint()) {
        if full.first_index > target {
            continue;
        }
        let checked = check_entry(archive, full);
        let (Ok(()), Some(file)) = (checked.result.as_ref(), checked.file) else {
            let problem = checked.result.err().map_or_else(String::new, |(problem, _)| problem);
            plan.problems.push(format!("checkpoint skipped: {problem}"));
            continue;
        };
        let mut chain = vec![(full.clone(), file)];
        for incremental in manifest.chain_from(full).into_iter().skip(1) {
            if incremental.first_index > target {
                break;
            }
            let checked = check_entry(archive, &incremental);
            let (Ok(()), Some(file)) = (checked.result.as_ref(), checked.file) else {
                let problem = checked.result.err().map_or_else(String::new, |(problem, _)| problem);
                plan.problems.push(format!("checkpoint skipped (the chain ends before it): {problem}"));
                break;
            };
            chain.push((incremental, file));
        }
        plan.base_index = chain.last().map_or(0, |(tip, _)| tip.first_index);
        plan.last_index = plan.base_index;
        plan.chain = chain;
        return;
    }
}

/// Adds the segments after the chain, contiguous and intact, up to `target`.
fn follow_segments(archive: &Path, manifest: &Manifest, target: u64, plan: &mut Plan) {
    let mut next = plan.base_index + 1;
    for entry in &manifest.segments {
        if entry.last_index < next {
            continue;
        }
        if next > target {
            return;
        }
        if entry.first_index > next {
            plan.stopped = Some(format!(
                "records {next}..={} are not in the archive (the manifest names no file holding them)",
                entry.first_index - 1
            ));
            return;
        }
        let checked = check_entry(archive, entry);
        let (intact, problem) = match checked.result {
            Ok(()) => (entry.last_index, None),
            Err((problem, parsed)) => {
                (parsed.and_then(|parsed| parsed.frames.last().map(|frame| frame.index)).unwrap_or(0), Some(problem))
            }
        };
        let last = intact.min(target);
        if let (true, Some(file)) = (last >= next, checked.file) {
            plan.segments.push((entry.clone(), last, file));
            plan.last_index = last;
            next = last + 1;
        }
        if let Some(problem) = problem {
            if last < target {
                plan.problems.push(problem.clone());
                plan.stopped = Some(problem);
            }
            return;
        }
    }
    let end = manifest.segments.last().map_or(plan.base_index, |last| last.last_index);
    if target != u64::MAX && plan.last_index < target && plan.stopped.is_none() {
        plan.stopped = Some(format!("the archive ends at index {end}, before index {target}"));
    }
}

fn describe(problems: &[Problem]) -> String {
    if problems.is_empty() {
        String::new()
    } else {
        format!(" ({})", problems.join("; "))
    }
}

/// What `tandem archive verify` found.
#[derive(Debug, Clone)]
pub struct Report {
    /// The archive.
    pub archive: PathBuf,
    /// Files the manifest names.
    pub files: usize,
    /// Every problem found: damaged files, gaps.
    pub problems: Vec<Problem>,
    /// Files in the archive the manifest does not name: not part of the archive (left by an
    /// interrupted pass, or their entry was lost); reported, never used.
    pub unnamed: Vec<String>,
    /// The checkpoint chain a restore would start from: (tip id, its index).
    pub base: Option<(u64, u64)>,
    /// How far a restore can go.
    pub last_consistent_index: u64,
    /// The manifest's last index.
    pub manifest_last_index: u64,
}

impl Report {
    /// Whether the archive is wholly intact.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty() && self.last_consistent_index == self.manifest_last_index
    }
}

/// Checks every file of the archive and its continuity; `progress` is told each file checked.
pub fn verify(archive: &Path, progress: &mut dyn FnMut(usize, usize)) -> Result<Report, manifest::ManifestError> {
    let manifest = manifest::read(archive)?;
    let entries: Vec<&Entry> = manifest.checkpoints.iter().chain(manifest.segments.iter()).collect();
    let mut problems = Vec::new();
    for (done, entry) in entries.iter().enumerate() {
        if let Err((problem, _)) = check_entry(archive, entry).result {
            problems.push(problem);
        }
        progress(done + 1, entries.len());
    }
    let mut report = Report {
        archive: archive.to_path_buf(),
        files: entries.len(),
        problems,
        unnamed: unnamed_files(archive, &manifest),
        base: None,
        last_consistent_index: 0,
        manifest_last_index: manifest.last_index(),
    };
    match plan(archive, &manifest, None) {
        Ok(plan) => {
            report.base =
                plan.chain.last().and_then(|(tip, _)| tip.checkpoint.as_ref().map(|info| (info.id, tip.first_index)));
            report.last_consistent_index = plan.last_index;
            if let Some(stopped) = plan.stopped {
                if !report.problems.contains(&stopped) {
                    report.problems.push(stopped);
                }
            }
        }
        Err(problem) => report.problems.push(problem),
    }
    Ok(report)
}

/// Archive files the manifest does not name (left by an interrupted pass, or an entry lost).
fn unnamed_files(archive: &Path, manifest: &Manifest) -> Vec<Problem> {
    let named: std::collections::HashSet<&str> =
        manifest.checkpoints.iter().chain(manifest.segments.iter()).map(|entry| entry.name.as_str()).collect();
    let mut problems = Vec::new();
    for sub in [SEGMENTS_DIRECTORY, CHECKPOINTS_DIRECTORY] {
        let Ok(entries) = fs::read_dir(archive.join(sub)) else { continue };
        let mut names: Vec<String> =
            entries.flatten().map(|entry| entry.file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        for name in names {
            let relative = format!("{sub}/{name}");
            if !named.contains(relative.as_str()) {
                problems.push(format!("{relative}: not named by the manifest (not part of the archive)"));
            }
        }
    }
    problems
}
