//! Which key each request names: one hot key, a uniform spread over `N`
//! keys, or a Zipf-distributed popularity over `N` keys.
//!
//! A distribution draws a key *index* in `0..N`; the key sent is
//! `<prefix><index>`, so a run's keys are easy to find in the service's logs
//! and two runs with different prefixes never share a counter.

use std::fmt;
use std::str::FromStr;

use rand::{Rng, RngExt};
use rand_distr::{Distribution, Zipf};

/// How keys are drawn, as given by `--keys`.
#[derive(Debug, Clone, PartialEq)]
pub enum KeySpec {
    /// `hot`: every request names the same key (index 0).
    Hot,
    /// `uniform:N`: each request names one of `N` keys, all equally likely.
    Uniform { keys: u64 },
    /// `zipf:N:S`: key of rank `r` (1-based) is drawn with probability
    /// proportional to `1 / r^S`; index 0 is the most popular.
    Zipf { keys: u64, exponent: f64 },
}

impl KeySpec {
    /// The number of distinct keys the distribution can draw.
    pub fn key_space(&self) -> u64 {
        match self {
            KeySpec::Hot => 1,
            KeySpec::Uniform { keys } | KeySpec::Zipf { keys, .. } => *keys,
        }
    }
}

impl fmt::Display for KeySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySpec::Hot => f.write_str("hot"),
            KeySpec::Uniform { keys } => write!(f, "uniform:{keys}"),
            KeySpec::Zipf { keys, exponent } => write!(f, "zipf:{keys}:{exponent}"),
        }
    }
}

impl FromStr for KeySpec {
    type Err = String;

    fn from_str(s: &str) -> Result<KeySpec, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let count = |n: &str| -> Result<u64, String> {
            match n.parse::<u64>() {
                Ok(n) if n >= 1 => Ok(n),
                _ => Err(format!(
                    "the number of keys must be a whole number of at least 1; got {n:?}"
                )),
            }
        };
        match parts.as_slice() {
            ["hot"] => Ok(KeySpec::Hot),
            ["uniform", n] => Ok(KeySpec::Uniform { keys: count(n)? }),
            ["zipf", n, exponent] => {
                let exponent: f64 = exponent
                    .parse()
                    .map_err(|_| format!("the Zipf exponent must be a number; got {exponent:?}"))?;
                if !exponent.is_finite() || exponent < 0.0 {
                    return Err(format!(
                        "the Zipf exponent must be finite and at least 0; got {exponent}"
                    ));
                }
                Ok(KeySpec::Zipf {
                    keys: count(n)?,
                    exponent,
                })
            }
            _ => Err(format!(
                "expected hot, uniform:N or zipf:N:S (e.g. zipf:1000:1.1); got {s:?}"
            )),
        }
    }
}

/// Draws key indices according to a [`KeySpec`].
#[derive(Debug, Clone)]
pub struct KeyGen {
    kind: GenKind,
}

#[derive(Debug, Clone)]
enum GenKind {
    Hot,
    Uniform(u64),
    Zipf(Zipf<f64>, u64),
}

impl KeyGen {
    pub fn new(spec: &KeySpec) -> KeyGen {
        let kind = match *spec {
            KeySpec::Hot => GenKind::Hot,
            KeySpec::Uniform { keys } => GenKind::Uniform(keys),
            KeySpec::Zipf { keys, exponent } => GenKind::Zipf(
                // `KeySpec` guarantees keys ≥ 1 and a finite exponent ≥ 0,
                // the only inputs `Zipf::new` refuses.
                Zipf::new(keys as f64, exponent).expect("a KeySpec is a valid Zipf distribution"),
                keys,
            ),
        };
        KeyGen { kind }
    }

    /// The index (in `0..key_space`) of the next request's key.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> u64 {
        match &self.kind {
            GenKind::Hot => 0,
            GenKind::Uniform(keys) => rng.random_range(0..*keys),
            // Zipf draws a rank in [1, keys] as a float; rank 1 is index 0.
            GenKind::Zipf(zipf, keys) => (zipf.sample(rng) as u64).clamp(1, *keys) - 1,
        }
    }
}

/// The key string for `index`.
pub fn key_name(prefix: &str, index: u64) -> String {
    format!("{prefix}{index}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    fn histogram(spec: &str, draws: usize) -> Vec<u64> {
        let spec: KeySpec = spec.parse().unwrap();
        let gen = KeyGen::new(&spec);
        let mut rng = SmallRng::seed_from_u64(7);
        let mut counts = vec![0u64; spec.key_space() as usize];
        for _ in 0..draws {
            counts[gen.sample(&mut rng) as usize] += 1;
        }
        counts
    }

    #[test]
    fn specs_parse_and_print_back() {
        for s in ["hot", "uniform:1000", "zipf:1000:1.1", "zipf:5:0"] {
            assert_eq!(s.parse::<KeySpec>().unwrap().to_string(), s);
        }
        assert_eq!("uniform:1".parse::<KeySpec>().unwrap().key_space(), 1);
        for bad in [
            "",
            "cold",
            "uniform",
            "uniform:0",
            "uniform:-3",
            "uniform:x",
            "zipf:10",
            "zipf:10:-1",
            "zipf:10:nan",
            "zipf:0:1",
        ] {
            assert!(bad.parse::<KeySpec>().is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn hot_is_always_the_same_key() {
        let counts = histogram("hot", 1000);
        assert_eq!(counts, vec![1000]);
    }

    #[test]
    fn uniform_spreads_evenly_over_every_key() {
        let draws = 200_000;
        let counts = histogram("uniform:100", draws);
        let expected = (draws / 100) as f64;
        // Each count is Binomial(200000, 0.01): sd ≈ 44.5; 6 sd is a
        // comfortable margin for 100 keys with a fixed seed.
        for (i, &c) in counts.iter().enumerate() {
            assert!(
                (c as f64 - expected).abs() < 6.0 * 44.5,
                "key {i} drawn {c} times, expected ~{expected}"
            );
        }
    }

    #[test]
    fn zipf_follows_its_exponent() {
        let draws = 200_000;
        let counts = histogram("zipf:1000:1", draws);
        // P(rank r) = (1/r) / H(1000), H(1000) ≈ 7.4855.
        let h = (1..=1000).map(|r| 1.0 / r as f64).sum::<f64>();
        for rank in [1usize, 2, 3, 10] {
            let expected = draws as f64 / rank as f64 / h;
            let got = counts[rank - 1] as f64;
            assert!(
                (got - expected).abs() < 0.05 * expected,
                "rank {rank}: {got} draws, expected ~{expected:.0}"
            );
        }
        // Popularity falls with rank, and the tail is still reached.
        assert!(counts[0] > counts[1] && counts[1] > counts[9] && counts[9] > counts[99]);
        assert!(counts[500..].iter().any(|&c| c > 0));
    }

    #[test]
    fn zipf_with_exponent_zero_is_uniform() {
        let counts = histogram("zipf:10:0", 100_000);
        for &c in &counts {
            assert!((c as f64 - 10_000.0).abs() < 600.0, "{counts:?}");
        }
    }

    #[test]
    fn key_names_carry_the_prefix() {
        assert_eq!(key_name("lg-ab12:", 42), "lg-ab12:42");
    }
}
