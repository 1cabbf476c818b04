//! Pub/sub: channels and patterns → subscribers' bounded queues.
//!
//! `PUBLISH` never waits for a subscriber: a message goes into each
//! subscriber's bounded queue, and a subscriber whose queue is full is
//! disconnected (Redis does the same with its pub/sub output-buffer limit),
//! so one slow reader cannot grow the server's memory without bound.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::RwLock;
use tandem_resp::Frame;
use tokio::sync::mpsc;

use super::clients::Client;
use crate::store::glob;

/// A subscriber's queue and its client (to disconnect it when the queue is full).
#[derive(Clone)]
pub struct Subscriber {
    /// Messages for the connection to write.
    pub queue: mpsc::Sender<Frame>,
    /// The subscribing client.
    pub client: Arc<Client>,
}

#[derive(Default)]
struct Inner {
    channels: HashMap<Bytes, HashMap<u64, Subscriber>>,
    patterns: HashMap<Bytes, HashMap<u64, Subscriber>>,
}

/// The pub/sub broker.
#[derive(Default)]
pub struct Broker {
    inner: RwLock<Inner>,
}

/// Whether a subscription is to a channel or a pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `SUBSCRIBE`.
    Channel,
    /// `PSUBSCRIBE`.
    Pattern,
}

impl Broker {
    /// Adds a subscription; returns false if it already existed.
    pub fn subscribe(&self, kind: Kind, name: &Bytes, subscriber: Subscriber) -> bool {
        let mut inner = self.inner.write();
        let map = match kind {
            Kind::Channel => &mut inner.channels,
            Kind::Pattern => &mut inner.patterns,
        };
        map.entry(name.clone()).or_default().insert(subscriber.client.id, subscriber).is_none()
    }

    /// Removes a subscription; returns false if there was none.
    pub fn unsubscribe(&self, kind: Kind, name: &Bytes, client_id: u64) -> bool {
        let mut inner = self.inner.write();
        let map = match kind {
            Kind::Channel => &mut inner.channels,
            Kind::Pattern => &mut inner.patterns,
        };
        let Some(subscribers) = map.get_mut(name) else { return false };
        let removed = subscribers.remove(&client_id).is_some();
        if subscribers.is_empty() {
            map.remove(name);
        }
        removed
    }

    /// Delivers a message; returns how many subscriptions received it.
    pub fn publish(&self, channel: &Bytes, message: &Bytes) -> usize {
        let inner = self.inner.read();
        let mut receivers = 0;
        if let Some(subscribers) = inner.channels.get(channel) {
            for subscriber in subscribers.values() {
                let frame = Frame::Push(vec![
                    Frame::Bulk(Bytes::from_static(b"message")),
                    Frame::Bulk(channel.clone()),
                    Frame::Bulk(message.clone()),
                ]);
                receivers += deliver(subscriber, frame);
            }
        }
        for (pattern, subscribers) in inner.patterns.iter() {
            if !glob::matches(pattern, channel) {
                continue;
            }
            for subscriber in subscribers.values() {
                let frame = Frame::Push(vec![
                    Frame::Bulk(Bytes::from_static(b"pmessage")),
                    Frame::Bulk(pattern.clone()),
                    Frame::Bulk(channel.clone()),
                    Frame::Bulk(message.clone()),
                ]);
                receivers += deliver(subscriber, frame);
            }
        }
        receivers
    }

    /// Number of channels with subscribers, and number of patterns.
    pub fn counts(&self) -> (usize, usize) {
        let inner = self.inner.read();
        (inner.channels.len(), inner.patterns.len())
    }
}

fn deliver(subscriber: &Subscriber, frame: Frame) -> usize {
    match subscriber.queue.try_send(frame) {
        Ok(()) => 1,
        Err(mpsc::error::TrySendError::Full(_)) => {
            tracing::warn!(client = subscriber.client.id, "disconnecting a subscriber that does not keep up");
            subscriber.client.kill();
            0
        }
        Err(mpsc::error::TrySendError::Closed(_)) => 0,
    }
}
