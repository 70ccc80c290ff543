//! A strategy as a loop or a workspace runs it: the query, and the
//! stochastic batch it draws instead of the k best, if any (`power-bald`).

use super::{Query, Stochastic, StochasticKind, Strategy};

/// A strategy as it is run: its query, and the stochastic batch it draws
/// instead of the top k, if any.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Method {
    /// The strategy.
    pub query: Query,
    /// Its stochastic batch.
    pub stochastic: Option<Stochastic>,
}

impl From<Query> for Method {
    fn from(query: Query) -> Method {
        Method {
            query,
            stochastic: None,
        }
    }
}

impl From<Strategy> for Method {
    fn from(s: Strategy) -> Method {
        Query::Score(s).into()
    }
}

impl Method {
    /// Parses a strategy's name, prefixed by a stochastic batch's kind to
    /// draw it (`power-bald`, `softmax-margin`, `softrank-entropy`) at
    /// inverse temperature `beta`; refuses what [`Method::new`] refuses.
    pub fn parse(name: &str, beta: f64) -> Result<Method, String> {
        let (kind, rest) = Method::split_kind(name);
        let query = Query::from_name(rest)
            .ok_or_else(|| format!("unknown strategy {rest:?} (in {name:?})"))?;
        Method::new(query, kind, beta)
    }

    /// `query`, drawing `kind`'s stochastic batches at inverse temperature
    /// `beta` if a kind is given; refuses a kind on random (the uniform
    /// baseline), on a strategy that picks its own batch, and β ≤ 0.
    pub fn new(query: Query, kind: Option<StochasticKind>, beta: f64) -> Result<Method, String> {
        let m = Method {
            query,
            stochastic: kind.map(|k| Stochastic::new(k, beta)),
        };
        m.check()?;
        Ok(m)
    }

    /// Refuses a stochastic batch on random (the uniform baseline), on a
    /// strategy that picks its own batch, and β ≤ 0, naming the method.
    pub fn check(&self) -> Result<(), String> {
        let Some(st) = self.stochastic else {
            return Ok(());
        };
        let name = format!("{}-{}", st.kind, self.query);
        if self.query == Query::Score(Strategy::Random) {
            return Err(format!(
                "{name}: random is the uniform baseline and draws no stochastic batch"
            ));
        }
        st.check_for(self.query).map_err(|e| format!("{name}: {e}"))
    }

    /// A name's stochastic kind prefix, if any, and the strategy's name
    /// after it.
    pub fn split_kind(name: &str) -> (Option<StochasticKind>, &str) {
        StochasticKind::ALL
            .into_iter()
            .find_map(|k| Some((Some(k), name.strip_prefix(k.name())?.strip_prefix('-')?)))
            .unwrap_or((None, name))
    }

    /// The stochastic batch it draws: none for random, which stays the
    /// uniform baseline, nor for a strategy that picks its own batch.
    pub fn drawn(&self) -> Option<Stochastic> {
        self.stochastic.filter(|s| {
            s.check_for(self.query).is_ok() && self.query != Query::Score(Strategy::Random)
        })
    }

    /// Its name in reports: the strategy's, prefixed by its stochastic
    /// batch's kind when it draws one (`power-bald`, as Kirsch et al.'s
    /// PowerBALD).
    pub fn name(&self) -> String {
        match self.drawn() {
            Some(st) => format!("{}-{}", st.kind, self.query),
            None => self.query.name().into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::{Disagreement, Regression};

    #[test]
    fn names_parse_back_to_their_method() {
        for q in Query::all() {
            let plain = Method::parse(q.name(), 1.0).unwrap();
            assert_eq!(plain, Method::from(q));
            assert_eq!(plain.name(), q.name());
            for kind in StochasticKind::ALL {
                let name = format!("{kind}-{q}");
                match Method::parse(&name, 2.0) {
                    Ok(m) => {
                        assert!(q.scores_rows() || q == Query::Regress(Regression::Emcm));
                        assert_ne!(q, Query::Score(Strategy::Random));
                        assert_eq!(m.name(), name);
                        assert_eq!(m.drawn(), Some(Stochastic::new(kind, 2.0)));
                    }
                    Err(e) => assert!(
                        q.picks_batch()
                            || matches!(q, Query::Cold(_))
                            || q == Query::Score(Strategy::Random),
                        "{name}: {e}"
                    ),
                }
            }
        }
        let bald = Method::parse("power-bald", 1.0).unwrap();
        assert_eq!(bald.query, Query::Disagree(Disagreement::Bald));
        let e = Method::parse("power-bald", 0.0).unwrap_err();
        assert!(e.contains("beta must be above 0"), "{e}");
        let e = Method::parse("power-nonsense", 1.0).unwrap_err();
        assert!(e.contains("unknown strategy \"nonsense\""), "{e}");
    }
}
