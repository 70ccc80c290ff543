//! What a workspace's stored label codes mean. A single-label workspace
//! stores a class index; a multi-label one (`init --multilabel`) stores the
//! set of labels as a bit mask (bit j = class j, so at most 63 classes),
//! which makes a set one value everywhere a class is one value: labels,
//! votes, conflicts, selections' predictions. Names and parsing live here
//! and nowhere else.

use crate::learner::argmax;

/// The most classes a multi-label workspace holds (one bit each in a
/// non-negative SQLite integer).
pub const MAX_MULTILABEL_CLASSES: usize = 63;

/// The classes, and whether a label is one of them or a set of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vocab {
    /// Class names, in label order.
    pub names: Vec<String>,
    /// Whether a label is a set of classes.
    pub multilabel: bool,
}

impl Vocab {
    /// A single-label vocabulary (the tests' and the seed checks').
    pub fn single(names: &[String]) -> Vocab {
        Vocab {
            names: names.to_vec(),
            multilabel: false,
        }
    }

    /// The classes a code holds: its class, or its set's, ascending.
    pub fn classes_of(&self, code: usize) -> Vec<usize> {
        match self.multilabel {
            false => vec![code],
            true => (0..self.names.len())
                .filter(|&j| code >> j & 1 == 1)
                .collect(),
        }
    }

    /// A code's name: the class name, or the set's names joined by `|`
    /// (`""` for the empty set), as CSV files write it.
    pub fn name(&self, code: usize) -> String {
        let names: Vec<&str> = self
            .classes_of(code)
            .into_iter()
            .filter_map(|c| self.names.get(c).map(String::as_str))
            .collect();
        names.join("|")
    }

    /// The code of a set of classes (ascending, no repeats).
    pub fn set_code(classes: &[usize]) -> usize {
        classes.iter().fold(0, |m, &c| m | 1 << c)
    }

    /// The model's label of a probability row: the most probable class,
    /// or the set of labels whose sigmoid output exceeds 0.5.
    pub fn predicted(&self, probs: &[f32]) -> usize {
        match self.multilabel {
            false => argmax(probs),
            true => probs
                .iter()
                .enumerate()
                .filter(|(_, p)| **p > 0.5)
                .fold(0, |m, (j, _)| m | 1 << j),
        }
    }

    /// A code's 0/1 targets, one per class (a multi-label model's row).
    pub fn targets(&self, code: usize) -> impl Iterator<Item = f32> + '_ {
        (0..self.names.len()).map(move |j| f32::from(code >> j & 1 == 1))
    }

    /// Outputs per row of the workspace's model.
    pub fn width(&self) -> usize {
        self.names.len()
    }

    /// Whether a code is a label this vocabulary can hold.
    pub fn holds(&self, code: usize) -> bool {
        match self.multilabel {
            false => code < self.names.len(),
            true => code >> self.names.len() == 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_are_masks_and_names_join_with_bars() {
        let v = Vocab {
            names: vec!["cat".into(), "dog".into(), "bird".into()],
            multilabel: true,
        };
        let code = Vocab::set_code(&[0, 2]);
        assert_eq!(code, 5);
        assert_eq!(v.name(code), "cat|bird");
        assert_eq!(v.name(0), "");
        assert_eq!(v.classes_of(code), [0, 2]);
        assert_eq!(v.targets(code).collect::<Vec<_>>(), [1.0, 0.0, 1.0]);
        assert_eq!(v.predicted(&[0.9, 0.5, 0.51]), 5);
        assert!(v.holds(7) && !v.holds(8));
        let s = Vocab::single(&v.names);
        assert_eq!(
            (s.name(2), s.predicted(&[0.1, 0.2, 0.7])),
            ("bird".into(), 2)
        );
        assert!(s.holds(2) && !s.holds(3));
    }
}
