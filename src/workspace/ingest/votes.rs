//! Votes and the rule that turns an item's votes into a label, a conflict
//! or a skip.

/// What one annotation says about its item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Vote {
    /// One class chosen.
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

/// The rule that turns an item's votes into a label. One class must have a
/// strict plurality *and* at least `agreement` of the class votes; an
/// annotation with several classes ticked makes the item a conflict; skips
/// and empty submits are not votes for a class, and an item with nothing
/// else is skipped.
pub fn decide(votes: &[Vote], classes: &[String], agreement: f64) -> Decision {
    let mut tally = vec![0usize; classes.len()];
    let (mut skips, mut empty) = (0, 0);
    for v in votes {
        match v {
            Vote::Class(c) => tally[*c] += 1,
            Vote::Several(cs) => {
                let names: Vec<&str> = cs.iter().map(|&c| classes[c].as_str()).collect();
                return Decision::Conflict(format!(
                    "several choices ticked in one annotation ({})",
                    names.join(" + ")
                ));
            }
            Vote::Skipped => skips += 1,
            Vote::Empty => empty += 1,
        }
    }
    let total: usize = tally.iter().sum();
    if total == 0 {
        return Decision::Skipped(skips, empty);
    }
    let best = tally.iter().copied().max().unwrap_or(0);
    let winners: Vec<usize> = (0..tally.len()).filter(|&c| tally[c] == best).collect();
    if winners.len() == 1 && best as f64 >= agreement * total as f64 {
        return Decision::Label(winners[0]);
    }
    let counts: Vec<String> = (0..tally.len())
        .filter(|&c| tally[c] > 0)
        .map(|c| format!("{} {}", classes[c], tally[c]))
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

    fn classes() -> Vec<String> {
        vec!["cat".into(), "dog".into(), "bird".into()]
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
}
