//! `tandem archive verify ARCHIVE` and `tandem restore --from ARCHIVE --data-dir DIR
//! [--to-index N | --to-time T]`: the operator's side of the archive, offline.

use std::path::Path;
use std::process::ExitCode;

use super::restore::{open_check, rebuild_with_progress, Rebuilt, Target};
use super::verify;
use crate::checkpoint::cli::ProgressBar;

/// `tandem archive verify`: every file and the continuity; exit 1 unless wholly intact.
pub fn verify(archive: &Path) -> ExitCode {
    let mut bar: Option<ProgressBar> = None;
    let report = verify::verify(archive, &mut |done, total| {
        bar.get_or_insert_with(|| ProgressBar::new("verifying", total as u64)).update(done as u64);
    });
    if let Some(bar) = bar.as_mut() {
        bar.finish();
    }
    let report = match report {
        Ok(report) => report,
        Err(error) => {
            eprintln!("tandem: {error}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "archive {}: {} files, manifest ends at index {}",
        report.archive.display(),
        report.files,
        report.manifest_last_index
    );
    for problem in &report.problems {
        println!("problem: {problem}");
    }
    for unnamed in &report.unnamed {
        println!("note: {unnamed}");
    }
    match report.base {
        Some((id, index)) => println!("restore starts from checkpoint {id} (log index {index})"),
        None => println!("restore starts from log index 1 (no usable checkpoint)"),
    }
    println!("last consistent index: {}", report.last_consistent_index);
    if report.is_clean() {
        println!("ok: every checksum matches and the log is continuous");
        ExitCode::SUCCESS
    } else if report.last_consistent_index == report.manifest_last_index {
        println!("DAMAGED: some files are bad, but a restore still reaches index {}", report.last_consistent_index);
        ExitCode::FAILURE
    } else {
        println!("DAMAGED: a restore stops at index {}", report.last_consistent_index);
        ExitCode::FAILURE
    }
}

/// Parses `--to-index` / `--to-time` into a target (at most one of them).
pub fn target(to_index: Option<u64>, to_time_unix_ms: Option<u64>) -> Target {
    match (to_index, to_time_unix_ms) {
        (Some(index), _) => Target::Index(index),
        (None, Some(time)) => Target::Time(time),
        (None, None) => Target::Latest,
    }
}

/// `tandem restore --from`: rebuild, then open the result as the server would. Exit 1
/// when the archive stopped the restore short of its target (the directory is still the
/// consistent state up to the index printed), 2 when nothing was restored.
pub fn restore(archive: &Path, data_dir: &Path, target: Target) -> ExitCode {
    let mut bar = ProgressBar::new("restoring", 1);
    let mut total_seen = 1;
    let rebuilt = rebuild_with_progress(archive, data_dir, target, &mut |done, total| {
        if total != total_seen {
            bar = ProgressBar::new("restoring", total);
            total_seen = total;
        }
        bar.update(done);
    });
    bar.finish();
    let rebuilt = match rebuilt {
        Ok(rebuilt) => rebuilt,
        Err(error) => {
            eprintln!("tandem: cannot restore: {error}");
            return ExitCode::from(2);
        }
    };
    print_rebuilt(data_dir, &rebuilt);
    eprint!("verifying: opening {} as the server would...", data_dir.display());
    let opened = open_check(data_dir, rebuilt.node);
    eprintln!();
    match opened {
        Ok((last_index, keys)) if last_index == rebuilt.last_index => {
            println!("verified: the data directory opens at log index {last_index} with {keys} keys");
        }
        Ok((last_index, _)) => {
            eprintln!("tandem: the rebuilt directory opens at index {last_index}, not {}", rebuilt.last_index);
            return ExitCode::from(2);
        }
        Err(error) => {
            eprintln!("tandem: the rebuilt directory does not open: {error}");
            return ExitCode::from(2);
        }
    }
    match &rebuilt.stopped {
        None => ExitCode::SUCCESS,
        Some(_) => ExitCode::FAILURE,
    }
}

fn print_rebuilt(data_dir: &Path, rebuilt: &Rebuilt) {
    for problem in &rebuilt.problems {
        eprintln!("warning: {problem}");
    }
    let from = match rebuilt.checkpoint {
        Some((id, index)) => format!("checkpoint {id} (index {index})"),
        None => "log index 1".to_string(),
    };
    println!(
        "restored {} from {from} plus {} records: log index {}",
        data_dir.display(),
        rebuilt.records,
        rebuilt.last_index
    );
    if let Some(reason) = &rebuilt.stopped {
        let wanted = rebuilt.target_index.map_or("the archive's end".to_string(), |index| format!("index {index}"));
        println!("STOPPED at the last consistent point, index {}, before {wanted}: {reason}", rebuilt.last_index);
    }
}
