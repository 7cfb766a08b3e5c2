//! Partitioning: every topic is co-partitioned by tenant with the Java-compatible murmur2
//! partitioner (R-TIME-2), so Java and librdkafka producers agree on where a tenant lives.

use switchboard_schemas::{Input, Topic};

/// Kafka's `Utils.murmur2` (the Java client's default partitioner hash).
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition of `tenant` among `partitions` (Kafka's `toPositive(murmur2(key)) % n`).
pub fn partition_of(tenant: &str, partitions: u32) -> u32 {
    ((murmur2(tenant.as_bytes()) & 0x7fff_ffff) as u32) % partitions.max(1)
}

/// The tenant a record key belongs to: the whole key, or for config records
/// (`<tenant>/<kind>/<id>`) the part before the first `/`.
pub fn tenant_of_key(key: &str) -> &str {
    key.split('/').next().unwrap_or(key)
}

/// Check that a record's key agrees with the tenant in its value.
pub fn check_key(topic: Topic, key: Option<&str>, input: &Input) -> Result<(), String> {
    let Some((tenant, _)) = input.tenant_and_id() else {
        return Ok(());
    };
    if tenant.contains('/') {
        return Err(format!("tenant {tenant:?} must not contain '/'"));
    }
    match key {
        None => Err(format!("a {topic} record needs the tenant as its key")),
        Some(k) if tenant_of_key(k) != tenant => {
            Err(format!("key {k:?} does not belong to tenant {tenant:?}"))
        }
        Some(k) if topic != Topic::Config && k != tenant => {
            Err(format!("key {k:?} must be the tenant {tenant:?}"))
        }
        Some(k) => match (input, k.split_once('/')) {
            // A config key names the entity the change is to, so compaction keeps the latest
            // change of each entity: a key naming another entity would let compaction drop
            // a change that is still in force.
            (Input::Config(c), Some((_, entity))) => {
                let expected = crate::config::entity_of(&c.change);
                let matches = entity == expected
                    || entity
                        .strip_prefix(expected.as_str())
                        .is_some_and(|rest| rest.starts_with('/'));
                if matches {
                    Ok(())
                } else {
                    Err(format!(
                        "key {k:?} names entity {entity:?}, but the change is to {expected:?} \
                         (key {tenant}/{expected})"
                    ))
                }
            }
            _ => Ok(()),
        },
    }
}

/// Check that a record sits on its tenant's partition (`partition` of `partitions`): a
/// producer whose partitioner disagrees (a config key such as `acme/queue/billing` hashed
/// whole, say) would have its tenant's records applied on several partitions, out of order
/// and against state that is not there. The error names the right partition.
pub fn check_partition(input: &Input, partition: u32, partitions: u32) -> Result<(), String> {
    let Some((tenant, _)) = input.tenant_and_id() else {
        return Ok(()); // ticks belong to every partition
    };
    let right = partition_of(tenant, partitions);
    if right == partition {
        Ok(())
    } else {
        Err(format!(
            "record of tenant {tenant:?} on partition {partition}: it belongs on partition \
             {right} (murmur2 of the tenant over {partitions} partitions; see the producer \
             contract in docs/records.md)"
        ))
    }
}
