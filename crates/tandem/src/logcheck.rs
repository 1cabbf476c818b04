//! `tandem log check [--repair]`: report on, or repair, a data directory's log.

use std::path::Path;
use std::process::ExitCode;

/// Runs the check (or repair) and prints the report; exit 0 when the log is
/// sound (or was repaired), 1 when a problem remains, 2 when it cannot be read.
pub fn run(data_dir: &Path, repair: bool) -> ExitCode {
    let dir = crate::db::log_dir(data_dir);
    let options = crate::config::FileConfig::default().validate().expect("defaults are valid").log_options();
    if repair {
        match tandem_log::repair(&dir, &options) {
            Ok(report) => {
                println!("{report}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("tandem: cannot repair {}: {error}", dir.display());
                ExitCode::from(2)
            }
        }
    } else {
        match tandem_log::check(&dir, &options) {
            Ok(report) => {
                println!("{report}");
                if report.problem.is_none() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(error) => {
                eprintln!("tandem: cannot check {}: {error}", dir.display());
                ExitCode::from(2)
            }
        }
    }
}
