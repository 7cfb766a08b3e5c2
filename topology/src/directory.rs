//! Which instance holds which partition, so any instance answers a query for any tenant
//! (issue 16 item 3, docs/operations.md "Scaling queries").
//!
//! Each instance announces its claim, its advertised HTTP URL and the partitions the
//! consumer group assigned it, on the compacted topic `<application id>-instances` (one
//! record per change, keyed by the instance id, always on partition 0), and every instance
//! reads that topic from the start. A partition belongs to the latest claim that names it
//! (the highest offset): after a rebalance the new holder's claim supersedes the old one,
//! even when the old holder was killed and never withdrew. A clean stop announces an empty
//! claim. The broker's group APIs (DescribeGroups) would say the same, but not every
//! Kafka-protocol broker serves them; a topic works on all of them.

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::Message;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::config::Config;
use crate::kafka;

/// One instance's claim: where it answers, and what it holds.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Claim {
    pub url: String,
    pub partitions: Vec<i32>,
}

/// The claims read so far: instance id → (offset of its latest claim, claim).
#[derive(Default)]
struct Claims {
    by_instance: BTreeMap<String, (i64, Claim)>,
}

struct Inner {
    claims: RwLock<Claims>,
    /// This instance's id and advertised URL.
    me: String,
    url: RwLock<String>,
    producer: Mutex<Option<(ThreadedProducer<DefaultProducerContext>, String)>>,
    stop: Arc<AtomicBool>,
}

/// The directory of instances; cheap to clone.
#[derive(Clone)]
pub struct Directory(Arc<Inner>);

/// The topic of the claims of `application_id`'s instances.
pub fn instances_topic(application_id: &str) -> String {
    format!("{application_id}-instances")
}

impl Directory {
    /// An empty directory for the instance `me`, reachable at `url` (settable until
    /// [`Directory::connect`], which starts reading and announcing).
    pub fn new(me: &str, url: &str) -> Directory {
        Directory(Arc::new(Inner {
            claims: RwLock::new(Claims::default()),
            me: me.to_string(),
            url: RwLock::new(url.trim_end_matches('/').to_string()),
            producer: Mutex::new(None),
            stop: Arc::new(AtomicBool::new(false)),
        }))
    }

    pub fn url(&self) -> String {
        self.0.url.read().map(|u| u.clone()).unwrap_or_default()
    }

    pub fn set_url(&self, url: &str) {
        if let Ok(mut u) = self.0.url.write() {
            *u = url.trim_end_matches('/').to_string();
        }
    }

    /// Start reading the claims (a thread that follows the topic) and make announcing
    /// possible. The topic must exist ([`kafka::topic_plan`] has it).
    pub fn connect(&self, config: &Config) -> Result<(), String> {
        let topic = instances_topic(&config.kafka.application_id);
        let producer: ThreadedProducer<DefaultProducerContext> = {
            let mut c = kafka::client_config(config);
            c.set("linger.ms", "0");
            c.create()
                .map_err(|e| format!("instance directory: cannot create a producer: {e}"))?
        };
        let reader = kafka::reader(config, "read_uncommitted").map_err(|e| e.to_string())?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Beginning)
            .map_err(|e| e.to_string())?;
        reader.assign(&tpl).map_err(|e| e.to_string())?;
        if let Ok(mut p) = self.0.producer.lock() {
            *p = Some((producer, topic));
        }
        let me = self.clone();
        std::thread::Builder::new()
            .name("directory".into())
            .spawn(move || me.follow(reader))
            .map(|_| ())
            .map_err(|e| format!("cannot start the directory thread: {e}"))
    }

    fn follow(&self, reader: BaseConsumer) {
        while !self.0.stop.load(Ordering::Relaxed) {
            let msg = match reader.poll(Duration::from_millis(200)) {
                None => continue,
                Some(Ok(msg)) => msg,
                Some(Err(e)) => {
                    // A missing topic or an unreachable broker: say so, and do not spin.
                    tracing::debug!(error = %e, "instance directory: cannot read the claims");
                    std::thread::sleep(Duration::from_millis(500));
                    continue;
                }
            };
            let Some(Ok(instance)) = msg.key().map(std::str::from_utf8) else {
                continue;
            };
            let claim: Option<Claim> = msg.payload().and_then(|p| serde_json::from_slice(p).ok());
            self.learn(instance, msg.offset(), claim);
        }
    }

    /// Take in one claim read at `offset` (`None`: the instance withdrew).
    pub fn learn(&self, instance: &str, offset: i64, claim: Option<Claim>) {
        let Ok(mut claims) = self.0.claims.write() else {
            return;
        };
        match claim {
            Some(c) => {
                claims.by_instance.insert(instance.to_string(), (offset, c));
            }
            None => {
                claims.by_instance.remove(instance);
            }
        }
    }

    /// Announce this instance's partitions (all of them, after every change).
    pub fn announce(&self, partitions: &[i32]) {
        let claim = Claim {
            url: self.url(),
            partitions: partitions.to_vec(),
        };
        let Ok(guard) = self.0.producer.lock() else {
            return;
        };
        let Some((producer, topic)) = guard.as_ref() else {
            return;
        };
        let Ok(value) = serde_json::to_vec(&claim) else {
            return;
        };
        let record = BaseRecord::to(topic)
            .key(self.0.me.as_str())
            .payload(&value)
            .partition(0);
        // Sent in the background: a rebalance never waits on the broker for this.
        if let Err((e, _)) = producer.send(record) {
            tracing::warn!(error = %e, "instance directory: cannot announce this instance's partitions");
        }
    }

    /// The URL of the instance that holds `partition`, if some instance claims it.
    pub fn owner(&self, partition: i32) -> Option<String> {
        let claims = self.0.claims.read().ok()?;
        claims
            .by_instance
            .values()
            .filter(|(_, c)| c.partitions.contains(&partition))
            .max_by_key(|(offset, _)| *offset)
            .map(|(_, c)| c.url.clone())
    }

    /// The URLs of the other instances that hold partitions.
    pub fn others(&self) -> Vec<String> {
        let me = self.url();
        let Ok(claims) = self.0.claims.read() else {
            return Vec::new();
        };
        let mut urls: Vec<String> = claims
            .by_instance
            .iter()
            .filter(|(id, (_, c))| **id != self.0.me && !c.partitions.is_empty())
            .map(|(_, (_, c))| c.url.clone())
            .filter(|u| *u != me)
            .collect();
        urls.sort();
        urls.dedup();
        urls
    }

    /// Withdraw this instance's claim and stop following the topic.
    pub fn close(&self) {
        self.announce(&[]);
        if let Ok(guard) = self.0.producer.lock() {
            if let Some((producer, _)) = guard.as_ref() {
                let _ = producer.flush(Duration::from_secs(5));
            }
        }
        self.0.stop.store(true, Ordering::Relaxed);
    }
}

/// The URL this instance advertises: `http.advertised_url`, else the listen address with
/// a wildcard host replaced by the machine's host name.
pub fn advertised_url(config: &Config, bound: std::net::SocketAddr) -> String {
    if !config.http.advertised_url.is_empty() {
        return config.http.advertised_url.trim_end_matches('/').to_string();
    }
    let host = if bound.ip().is_unspecified() {
        std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_string())
    } else {
        bound.ip().to_string()
    };
    format!("http://{host}:{}", bound.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(url: &str, partitions: &[i32]) -> Option<Claim> {
        Some(Claim {
            url: url.into(),
            partitions: partitions.to_vec(),
        })
    }

    /// R-RUN-5 (queries that scale out): the latest claim naming a partition owns it, so a
    /// killed instance's stale claim loses to its successor's; a withdrawn claim is gone.
    #[test]
    fn r_run_5_latest_claim_owns_a_partition() {
        let d = Directory::new("a", "http://a:1/");
        assert_eq!(d.url(), "http://a:1");
        d.learn("a", 0, claim("http://a:1", &[0, 1, 2, 3]));
        assert_eq!(d.owner(2).as_deref(), Some("http://a:1"));
        assert!(d.others().is_empty(), "only this instance");
        d.learn("b", 1, claim("http://b:1", &[2, 3]));
        assert_eq!(d.owner(2).as_deref(), Some("http://b:1"));
        assert_eq!(d.owner(0).as_deref(), Some("http://a:1"));
        assert_eq!(d.others(), vec!["http://b:1".to_string()]);
        // b killed: a takes 2 and 3 back with a newer claim while b's stays behind.
        d.learn("a", 2, claim("http://a:1", &[0, 1, 2, 3]));
        assert_eq!(d.owner(3).as_deref(), Some("http://a:1"));
        d.learn("a", 3, None);
        assert_eq!(d.owner(0), None);
        assert_eq!(d.owner(3).as_deref(), Some("http://b:1"));
    }
}
