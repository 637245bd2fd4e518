//! The calls of reports, checks with an id and leases: one `lua/once.lua`
//! or `lua/lease.lua` call each, unbatched, every key in the slot of the
//! call's partition (see `Store::apply` and `Store::lease`).

use fred::types::Value;

use super::{several_decided, RedisStore};
use crate::core::{Algorithm, Policy, Timestamp};
use crate::store::{Applied, CounterKey, LeaseOp, Once, Op, StoreError};

impl RedisStore {
    /// One call of `lua/lease.lua`, every counter in the slot of
    /// `partition`.
    pub(super) async fn lease_call(
        &self,
        partition: &str,
        counters: &[(CounterKey<'_>, u64)],
        number: u64,
        units: u64,
        op: LeaseOp,
    ) -> Result<Option<Timestamp>, StoreError> {
        let keys: Vec<String> = counters
            .iter()
            .flat_map(|(key, _)| {
                self.layout
                    .counter_keys(partition, *key, Algorithm::Concurrency)
                    .to_vec()
            })
            .collect();
        let mut args = vec![
            self.time.argument(),
            match op {
                LeaseOp::Release => "release",
                LeaseOp::Renew => "renew",
            }
            .to_owned(),
            format!("{number}:{units}"),
        ];
        args.extend(counters.iter().map(|(_, ttl_us)| ttl_us.to_string()));
        let reply: Vec<i64> = self
            .evalsha(self.scripts.lease(), keys, args)
            .await
            .map_err(|e| self.failed(e))?;
        match reply.as_slice() {
            [1, at] => Ok(Some(Timestamp::from_micros(u64::try_from(*at).unwrap_or(0)))),
            [0, _] => Ok(None),
            other => Err(StoreError {
                transient: false,
                message: format!("unexpected reply of the lease script: {other:?}"),
            }),
        }
    }

    /// One call of `lua/once.lua`, unbatched, every key (and the id's) in
    /// the slot of `partition`.
    pub(super) async fn once_call(
        &self,
        partition: &str,
        counters: &[(CounterKey<'_>, &Policy)],
        op: Op,
        once: Option<Once<'_>>,
    ) -> Result<Applied, StoreError> {
        let mut keys = Vec::with_capacity(counters.len() * 2 + 1);
        let mut args = Vec::with_capacity(7 + counters.len() * 5);
        args.push(self.time.argument());
        let (what, units, cost, consume) = match op {
            Op::Check(cost) => ("c", "0".to_owned(), cost.get(), "1"),
            Op::Acquire { cost, lease } => ("c", lease.to_string(), cost.get(), "1"),
            Op::Report(units) => ("r", units.get().to_string(), 1, "0"),
        };
        args.push(what.to_owned());
        args.push(units);
        // The id's lifetime in whole milliseconds, at least one.
        args.push(once.map_or(0, |once| once.ttl_us.div_ceil(1_000).max(1)).to_string());
        args.push(cost.to_string());
        args.push(consume.to_owned());
        args.push(counters.len().to_string());
        self.limit_args(partition, counters, &mut keys, &mut args);
        if let Some(once) = once {
            let rule = counters.first().map_or("", |(key, _)| key.rule);
            keys.push(self.layout.id_key(rule, partition, once.id));
        }
        let reply: Value = self
            .evalsha(self.scripts.once(), keys, args)
            .await
            .map_err(|e| self.failed(e))?;
        applied_from_reply(reply, counters.len(), op)
    }
}

/// `{duplicate, replies}` of `lua/once.lua`.
fn applied_from_reply(reply: Value, limits: usize, op: Op) -> Result<Applied, StoreError> {
    let unexpected = |what: &str| StoreError {
        transient: false,
        message: format!("unexpected reply of the once script: {what}"),
    };
    let Value::Array(mut parts) = reply else {
        return Err(unexpected("not an array"));
    };
    if parts.len() != 2 {
        return Err(unexpected("not two parts"));
    }
    let replies: Vec<Vec<i64>> = parts
        .pop()
        .unwrap_or(Value::Null)
        .convert()
        .map_err(|e| unexpected(&e.to_string()))?;
    let duplicate = parts.pop().and_then(|v| v.as_i64()) == Some(1);
    let (allowed, decisions) = several_decided(replies, limits)?;
    Ok(Applied {
        duplicate,
        allowed: allowed || duplicate && !matches!(op, Op::Report(_)),
        decisions,
    })
}
