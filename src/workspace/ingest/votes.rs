//! Votes and the rule that turns an item's votes into a label, a conflict
//! or a skip.

use crate::workspace::vocab::Vocab;

/// What one annotation says about its item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Vote {
    /// One label chosen: a class, or in a multi-label workspace a set of
    /// classes ([`Vocab`]'s code).
    Class(usize),
    /// Several classes ticked in one annotation: never a label.
    Several(Vec<usize>),
    /// Skipped (Label Studio's "cancelled" annotation).
    Skipped,
    /// Submitted with no choice from the workspace's control.
    Empty,
}

impl Vote {
    /// The kind as stored in the `votes` table.
    pub fn kind(&self) -> &'static str {
        match self {
            Vote::Class(_) => "class",
            Vote::Several(_) => "several",
            Vote::Skipped => "skipped",
            Vote::Empty => "empty",
        }
    }
}

/// What an item's votes decide.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// The votes chose this class.
    Label(usize),
    /// Not a label: why (annotators disagree, several choices ticked).
    Conflict(String),
    /// Only skips and empty submits: (skips, empty submits).
    Skipped(usize, usize),
}

/// The rule that turns an item's votes into a label. One label must have
/// a strict plurality *and* at least `agreement` of the label votes; in a
/// single-label workspace an annotation with several classes ticked makes
/// the item a conflict, and skips and empty submits are not votes, so an
/// item with nothing else is skipped. In a multi-label workspace a label
/// is the exact set ticked, and an empty submit says no class applies:
/// the empty set.
pub fn decide(votes: &[Vote], vocab: &Vocab, agreement: f64) -> Decision {
    let mut tally: std::collections::BTreeMap<usize, usize> = Default::default();
    let (mut skips, mut empty) = (0, 0);
    for v in votes {
        match v {
            Vote::Class(c) => *tally.entry(*c).or_default() += 1,
            Vote::Empty if vocab.multilabel() => *tally.entry(0).or_default() += 1,
            Vote::Several(cs) => {
                let names: Vec<String> = cs.iter().map(|&c| vocab.name(c)).collect();
                return Decision::Conflict(format!(
                    "several choices ticked in one annotation ({})",
                    names.join(" + ")
                ));
            }
            Vote::Skipped => skips += 1,
            Vote::Empty => empty += 1,
        }
    }
    let total: usize = tally.values().sum();
    if total == 0 {
        return Decision::Skipped(skips, empty);
    }
    let best = tally.values().copied().max().unwrap_or(0);
    let winners: Vec<usize> = tally
        .iter()
        .filter(|(_, n)| **n == best)
        .map(|(c, _)| *c)
        .collect();
    if winners.len() == 1 && best as f64 >= agreement * total as f64 {
        return Decision::Label(winners[0]);
    }
    let counts: Vec<String> = tally
        .iter()
        .map(|(&c, n)| match vocab.name(c) {
            name if name.is_empty() => format!("(none) {n}"),
            name => format!("{name} {n}"),
        })
        .collect();
    Decision::Conflict(format!(
        "annotators disagree ({}; a label needs a strict plurality and {:.0}% agreement)",
        counts.join(", "),
        agreement * 100.0
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classes() -> Vocab {
        Vocab::single(&["cat".into(), "dog".into(), "bird".into()])
    }

    #[test]
    fn votes_decide_by_plurality_and_agreement() {
        let c = classes();
        let d = |v: &[Vote], a| decide(v, &c, a);
        use Vote::*;
        assert_eq!(d(&[Class(1)], 0.5), Decision::Label(1));
        assert!(matches!(
            d(&[Class(0), Class(1)], 0.5),
            Decision::Conflict(_)
        ));
        assert_eq!(d(&[Class(0), Class(1), Class(1)], 0.5), Decision::Label(1));
        assert!(matches!(
            d(&[Class(0), Class(1), Class(1)], 0.75),
            Decision::Conflict(_)
        ));
        assert_eq!(d(&[Class(2), Skipped, Empty], 0.5), Decision::Label(2));
        assert_eq!(d(&[Skipped, Empty, Skipped], 0.5), Decision::Skipped(2, 1));
        assert!(
            matches!(d(&[Class(0), Several(vec![0, 1])], 0.5), Decision::Conflict(r) if r.contains("cat + dog"))
        );
    }

    #[test]
    fn multilabel_votes_agree_on_the_exact_set() {
        let v = Vocab {
            kind: crate::workspace::vocab::LabelKind::Set,
            ..classes()
        };
        let d = |votes: &[Vote]| decide(votes, &v, 0.5);
        use Vote::*;
        assert_eq!(d(&[Class(5)]), Decision::Label(5));
        assert_eq!(d(&[Class(5), Class(5), Class(1)]), Decision::Label(5));
        // An empty submit is the empty set; skips are still skips.
        assert_eq!(d(&[Empty, Skipped]), Decision::Label(0));
        assert_eq!(d(&[Skipped]), Decision::Skipped(1, 0));
        let Decision::Conflict(why) = d(&[Class(5), Class(1)]) else {
            panic!("two sets, one vote each")
        };
        assert!(why.contains("cat 1, cat|bird 1"), "{why}");
        let Decision::Conflict(why) = d(&[Empty, Class(2)]) else {
            panic!()
        };
        assert!(why.contains("(none) 1, dog 1"), "{why}");
    }
}
