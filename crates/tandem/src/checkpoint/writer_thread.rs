//! The thread that writes checkpoints: one for the process's life, started
//! on first use at nice 10, then fed a job per checkpoint.
//!
//! Why not a thread per checkpoint: a new thread starts at nice 0 and is
//! placed by the scheduler as a newcomer, at the moment the cut has just
//! been taken and clients are being served; it lowers its own priority only
//! once it runs. A thread that already sleeps at nice 10 wakes with that
//! weight. (And one `clone` less at the cut.) Measured in interleaved
//! runs, the client-seen stall at a cut did not change; this is kept as the
//! simpler arrangement.

use std::sync::mpsc::{self, Sender};

use parking_lot::Mutex;

/// A checkpoint's write, run on the writer thread.
pub type Job = Box<dyn FnOnce() + Send>;

/// The writer thread's queue; the thread ends when this is dropped.
#[derive(Default)]
pub struct WriterThread {
    jobs: Mutex<Option<Sender<Job>>>,
}

impl WriterThread {
    /// Runs `job` on the writer thread, starting the thread if there is none
    /// (or if the last one ended: a job that panicked takes its thread along).
    pub fn run(&self, job: Job) -> std::io::Result<()> {
        let mut jobs = self.jobs.lock();
        let job = match jobs.as_ref() {
            Some(sender) => match sender.send(job) {
                Ok(()) => return Ok(()),
                Err(mpsc::SendError(job)) => job,
            },
            None => job,
        };
        let (sender, receiver) = mpsc::channel::<Job>();
        std::thread::Builder::new().name("tandem-checkpoint".into()).spawn(move || {
            super::service::lower_thread_priority();
            while let Ok(job) = receiver.recv() {
                job();
            }
        })?;
        sender.send(job).expect("the new thread holds the receiver");
        *jobs = Some(sender);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thread_id() -> (std::thread::ThreadId, Option<String>) {
        let current = std::thread::current();
        (current.id(), current.name().map(str::to_string))
    }

    #[test]
    fn jobs_run_in_order_on_one_thread_that_outlives_a_panicking_job() {
        let writer = WriterThread::default();
        let (sender, receiver) = mpsc::channel();
        for number in 0..3 {
            let sender = sender.clone();
            writer.run(Box::new(move || sender.send((number, thread_id())).unwrap())).unwrap();
        }
        let ran: Vec<_> = (0..3).map(|_| receiver.recv().unwrap()).collect();
        assert_eq!(ran.iter().map(|(number, _)| *number).collect::<Vec<_>>(), [0, 1, 2]);
        assert!(ran.iter().all(|(_, thread)| *thread == ran[0].1), "one thread for all jobs");
        assert_eq!(ran[0].1 .1.as_deref(), Some("tandem-checkpoint"));
        assert_ne!(ran[0].1 .0, std::thread::current().id());

        writer.run(Box::new(|| panic!("a failing job"))).unwrap();
        // The panicking job ended the thread; the next job gets a new one.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let sender = sender.clone();
            writer.run(Box::new(move || sender.send((3, thread_id())).unwrap())).unwrap();
            if let Ok((_, thread)) = receiver.recv_timeout(std::time::Duration::from_secs(1)) {
                assert_ne!(thread.0, ran[0].1 .0, "a new thread");
                break;
            }
            assert!(std::time::Instant::now() < deadline, "no job ran after the panic");
        }
    }
}
