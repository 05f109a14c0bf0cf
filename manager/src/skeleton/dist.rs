//! Random and derived values of the skeleton formats: constants, the four statistical
//! distributions, and polynomials of a task's input size or length. Draws take a seeded
//! generator, so one seed always gives the same workflow.

use rand::Rng;
use rand_distr::{Distribution, LogNormal, Normal, Triangular};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::fmt;

/// A value drawn once per task (length) or per file (size). Results are clamped to >= 0.
#[derive(Clone, Debug, PartialEq)]
pub enum Dist {
    Constant(f64),
    /// Uniform on `[low, high]`.
    Uniform {
        low: f64,
        high: f64,
    },
    Normal {
        mean: f64,
        stdev: f64,
    },
    Triangular {
        low: f64,
        mode: f64,
        high: f64,
    },
    /// `exp(N(mu, sigma))`: `mu`/`sigma` belong to the underlying normal.
    LogNormal {
        mu: f64,
        sigma: f64,
    },
    /// `sum(coeffs[i] * x^i)` where `x` is named by `of`.
    Polynomial {
        coeffs: Vec<f64>,
        of: PolyVar,
    },
}

/// What a polynomial is a function of.
#[derive(Clone, Debug, PartialEq)]
pub enum PolyVar {
    /// Total size in bytes of the task's inputs.
    Inputs,
    /// Size in bytes of the task's input `n` (1-based).
    Input(usize),
    /// The task's length (only for output sizes).
    Length,
}

/// What a polynomial may look at while one task is generated.
#[derive(Clone, Copy, Debug, Default)]
pub struct PolyContext<'a> {
    pub input_sizes: &'a [f64],
    pub length: Option<f64>,
}

impl Dist {
    /// Draws one value (>= 0). Errors name what the polynomial could not find.
    pub fn sample<R: Rng>(&self, rng: &mut R, ctx: PolyContext<'_>) -> Result<f64, String> {
        let v = match self {
            Dist::Constant(c) => *c,
            Dist::Uniform { low, high } => {
                if low >= high {
                    *low
                } else {
                    rng.gen_range(*low..=*high)
                }
            }
            Dist::Normal { mean, stdev } => normal(*mean, *stdev, rng),
            Dist::Triangular { low, mode, high } => triangular(*low, *mode, *high, rng),
            Dist::LogNormal { mu, sigma } => lognormal(*mu, *sigma, rng),
            Dist::Polynomial { coeffs, of } => {
                let x = match of {
                    PolyVar::Inputs => ctx.input_sizes.iter().sum(),
                    PolyVar::Input(n) => {
                        *ctx.input_sizes.get(n.wrapping_sub(1)).ok_or_else(|| {
                            format!(
                                "the polynomial uses input {n} but the task has {} input(s)",
                                ctx.input_sizes.len()
                            )
                        })?
                    }
                    PolyVar::Length => ctx.length.ok_or_else(|| {
                        "a task length cannot be a polynomial of the length".to_string()
                    })?,
                };
                coeffs.iter().rev().fold(0.0, |acc, c| acc * x + c)
            }
        };
        Ok(v.max(0.0))
    }

    /// Checks parameters once, before any draw, so a bad file fails with a clear message.
    pub fn validate(&self) -> Result<(), String> {
        let finite = |xs: &[f64]| xs.iter().all(|x| x.is_finite());
        match self {
            Dist::Constant(c) if !finite(&[*c]) => Err("the value must be a finite number".into()),
            Dist::Uniform { low, high } if !finite(&[*low, *high]) || low > high => {
                Err(format!("uniform needs low <= high, got [{low}, {high}]"))
            }
            Dist::Normal { mean, stdev } if !finite(&[*mean, *stdev]) || *stdev < 0.0 => {
                Err(format!("normal needs stdev >= 0, got [{mean}, {stdev}]"))
            }
            Dist::Triangular { low, mode, high }
                if !(finite(&[*low, *mode, *high]) && low <= mode && mode <= high) =>
            {
                Err(format!(
                    "triangular needs low <= mode <= high, got [{low}, {mode}, {high}]"
                ))
            }
            Dist::LogNormal { mu, sigma } if !finite(&[*mu, *sigma]) || *sigma < 0.0 => {
                Err(format!("lognormal needs sigma >= 0, got [{mu}, {sigma}]"))
            }
            Dist::Polynomial { coeffs, .. } if coeffs.is_empty() || !finite(coeffs) => {
                Err("a polynomial needs at least one finite coefficient".into())
            }
            _ => Ok(()),
        }
    }

    /// The expected value where it is known without a task (polynomials: `None`).
    pub fn mean(&self) -> Option<f64> {
        match self {
            Dist::Constant(c) => Some(*c),
            Dist::Uniform { low, high } => Some((low + high) / 2.0),
            Dist::Normal { mean, .. } => Some(*mean),
            Dist::Triangular { low, mode, high } => Some((low + mode + high) / 3.0),
            Dist::LogNormal { mu, sigma } => Some((mu + sigma * sigma / 2.0).exp()),
            Dist::Polynomial { .. } => None,
        }
    }
}

/// `random.normalvariate(mean, stdev)`.
pub fn normal<R: Rng>(mean: f64, stdev: f64, rng: &mut R) -> f64 {
    match Normal::new(mean, stdev) {
        Ok(d) => d.sample(rng),
        Err(_) => mean,
    }
}

/// `random.lognormvariate(mu, sigma)`.
pub fn lognormal<R: Rng>(mu: f64, sigma: f64, rng: &mut R) -> f64 {
    match LogNormal::new(mu, sigma) {
        Ok(d) => d.sample(rng),
        Err(_) => mu.exp(),
    }
}

/// `random.triangular(low, high, mode)`; tolerates `low > high` as Python does.
pub fn triangular<R: Rng>(low: f64, mode: f64, high: f64, rng: &mut R) -> f64 {
    let (lo, hi) = if low <= high {
        (low, high)
    } else {
        (high, low)
    };
    if lo == hi {
        return lo;
    }
    match Triangular::new(lo, hi, mode.clamp(lo, hi)) {
        Ok(d) => d.sample(rng),
        Err(_) => mode,
    }
}

/// The table form of a value in the EManager skeleton format.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DistTable {
    constant: Option<f64>,
    uniform: Option<Vec<f64>>,
    normal: Option<Vec<f64>>,
    triangular: Option<Vec<f64>>,
    lognormal: Option<Vec<f64>>,
    polynomial: Option<Vec<f64>>,
    of: Option<String>,
}

impl DistTable {
    fn into_dist(self) -> Result<Dist, String> {
        let pair = |name: &str, v: &[f64]| -> Result<(f64, f64), String> {
            match v {
                [a, b] => Ok((*a, *b)),
                _ => Err(format!(
                    "`{name}` takes two numbers, e.g. {name} = [10, 20]"
                )),
            }
        };
        let mut found = Vec::new();
        if let Some(c) = self.constant {
            found.push(Dist::Constant(c));
        }
        if let Some(v) = &self.uniform {
            let (low, high) = pair("uniform", v)?;
            found.push(Dist::Uniform { low, high });
        }
        if let Some(v) = &self.normal {
            let (mean, stdev) = pair("normal", v)?;
            found.push(Dist::Normal { mean, stdev });
        }
        if let Some(v) = &self.triangular {
            let (low, mode, high) = match v.as_slice() {
                [l, h] => (*l, (l + h) / 2.0, *h),
                [l, m, h] => (*l, *m, *h),
                _ => return Err("`triangular` takes [low, high] or [low, mode, high]".into()),
            };
            found.push(Dist::Triangular { low, mode, high });
        }
        if let Some(v) = &self.lognormal {
            let (mu, sigma) = pair("lognormal", v)?;
            found.push(Dist::LogNormal { mu, sigma });
        }
        if let Some(coeffs) = self.polynomial {
            let of = match self.of.as_deref() {
                None | Some("inputs") => PolyVar::Inputs,
                Some("length") => PolyVar::Length,
                Some(s) => match s.strip_prefix("input.").and_then(|n| n.parse().ok()) {
                    Some(n) if n >= 1 => PolyVar::Input(n),
                    _ => {
                        return Err(format!(
                            "`of = \"{s}\"`: use \"inputs\", \"input.N\" (N >= 1) or \"length\""
                        ))
                    }
                },
            };
            found.push(Dist::Polynomial { coeffs, of });
        } else if self.of.is_some() {
            return Err("`of` only goes with `polynomial`".into());
        }
        match found.len() {
            1 => {
                let d = found.remove(0);
                d.validate()?;
                Ok(d)
            }
            0 => Err(
                "give one of constant, uniform, normal, triangular, lognormal, polynomial".into(),
            ),
            _ => Err(
                "give only one of constant, uniform, normal, triangular, lognormal, polynomial"
                    .into(),
            ),
        }
    }
}

impl<'de> Deserialize<'de> for Dist {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Dist;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number or a table such as { uniform = [10, 20] }")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Dist, E> {
                let d = Dist::Constant(v);
                d.validate().map_err(E::custom)?;
                Ok(d)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Dist, E> {
                self.visit_f64(v as f64)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Dist, E> {
                self.visit_f64(v as f64)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Dist, A::Error> {
                let t = DistTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                t.into_dist().map_err(de::Error::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn sample_mean(d: &Dist, n: usize) -> f64 {
        let mut rng = StdRng::seed_from_u64(11);
        let ctx = PolyContext::default();
        (0..n)
            .map(|_| d.sample(&mut rng, ctx).unwrap())
            .sum::<f64>()
            / n as f64
    }

    #[test]
    fn sample_means_match_each_distribution() {
        for d in [
            Dist::Constant(7.0),
            Dist::Uniform {
                low: 10.0,
                high: 20.0,
            },
            Dist::Normal {
                mean: 100.0,
                stdev: 10.0,
            },
            Dist::Triangular {
                low: 0.0,
                mode: 30.0,
                high: 90.0,
            },
            Dist::LogNormal {
                mu: 2.0,
                sigma: 0.5,
            },
        ] {
            let want = d.mean().unwrap();
            let got = sample_mean(&d, 50_000);
            assert!(
                (got - want).abs() / want < 0.02,
                "{d:?}: mean {got}, want {want}"
            );
        }
    }

    #[test]
    fn polynomial_uses_the_named_variable() {
        let mut rng = StdRng::seed_from_u64(1);
        let p = Dist::Polynomial {
            coeffs: vec![1.0, 0.0, 10.0],
            of: PolyVar::Input(2),
        };
        let ctx = PolyContext {
            input_sizes: &[1.0, 5.0],
            length: None,
        };
        assert_eq!(p.sample(&mut rng, ctx).unwrap(), 251.0);
        let missing = Dist::Polynomial {
            coeffs: vec![1.0],
            of: PolyVar::Input(3),
        };
        assert!(missing
            .sample(&mut rng, ctx)
            .unwrap_err()
            .contains("input 3"));
    }

    #[test]
    fn tables_deserialize_with_clear_errors() {
        #[derive(Deserialize, Debug)]
        struct W {
            v: Dist,
        }
        let w: W = toml::from_str("v = { triangular = [1, 3] }").unwrap();
        assert_eq!(
            w.v,
            Dist::Triangular {
                low: 1.0,
                mode: 2.0,
                high: 3.0
            }
        );
        let w: W = toml::from_str("v = 4").unwrap();
        assert_eq!(w.v, Dist::Constant(4.0));
        let e = toml::from_str::<W>("v = { uniform = [3, 1] }").unwrap_err();
        assert!(e.to_string().contains("uniform needs low <= high"), "{e}");
        let e = toml::from_str::<W>("v = { gamma = [3, 1] }").unwrap_err();
        assert!(e.to_string().contains("unknown field `gamma`"), "{e}");
    }
}
