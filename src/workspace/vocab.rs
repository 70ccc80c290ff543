//! What a workspace's stored label codes mean. A single-label workspace
//! stores a class index; a multi-label one (`init --multilabel`) stores the
//! set of labels as a bit mask (bit j = class j, so at most 63 classes); a
//! regression one (`init --regression NAME`) stores the number's f64 bits
//! (−0 stored as 0, so equal numbers are equal codes). Either way a label
//! is one value everywhere a class is one value: labels, votes, conflicts,
//! selections' predictions. Names and parsing live here and nowhere else.

use crate::learner::argmax;

/// The most classes a multi-label workspace holds (one bit each in a
/// non-negative SQLite integer).
pub const MAX_MULTILABEL_CLASSES: usize = 63;

/// What one label is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LabelKind {
    /// One class of the workspace's.
    #[default]
    Class,
    /// A set of its classes (multi-label).
    Set,
    /// A finite number (regression); the one name is the target's.
    Number,
}

impl LabelKind {
    /// As the workspace's metadata and messages spell it.
    pub fn name(self) -> &'static str {
        match self {
            LabelKind::Class => "single-label",
            LabelKind::Set => "multi-label",
            LabelKind::Number => "regression",
        }
    }
}

/// The classes, and whether a label is one of them, a set of them or a
/// number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vocab {
    /// Class names, in label order (a regression workspace's one name is
    /// its target's).
    pub names: Vec<String>,
    /// What a label is.
    pub kind: LabelKind,
}

impl Vocab {
    /// A single-label vocabulary (the tests' and the seed checks').
    pub fn single(names: &[String]) -> Vocab {
        Vocab {
            names: names.to_vec(),
            kind: LabelKind::Class,
        }
    }

    /// Whether labels are sets of classes.
    pub fn multilabel(&self) -> bool {
        self.kind == LabelKind::Set
    }

    /// Whether labels are numbers.
    pub fn numeric(&self) -> bool {
        self.kind == LabelKind::Number
    }

    /// The code of a number: its f64 bits, −0 as 0 (`None` if it is not
    /// finite).
    pub fn number_code(v: f64) -> Option<usize> {
        v.is_finite().then_some((v + 0.0).to_bits() as usize)
    }

    /// The number a regression code stands for.
    pub fn number(code: usize) -> f64 {
        f64::from_bits(code as u64)
    }

    /// The classes a code holds: its class, or its set's, ascending (none
    /// for a number).
    pub fn classes_of(&self, code: usize) -> Vec<usize> {
        match self.kind {
            LabelKind::Class => vec![code],
            LabelKind::Set => (0..self.names.len())
                .filter(|&j| code >> j & 1 == 1)
                .collect(),
            LabelKind::Number => Vec::new(),
        }
    }

    /// A code's name: the class name, the set's names joined by `|`
    /// (`""` for the empty set), or the number (shortest form that reads
    /// back as the same f64), as CSV files write it.
    pub fn name(&self, code: usize) -> String {
        if self.numeric() {
            return Vocab::number(code).to_string();
        }
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

    /// The model's label of an output row: the most probable class, the
    /// set of labels whose sigmoid output exceeds 0.5, or the regressor's
    /// number.
    pub fn predicted(&self, probs: &[f32]) -> usize {
        match self.kind {
            LabelKind::Class => argmax(probs),
            LabelKind::Set => probs
                .iter()
                .enumerate()
                .filter(|(_, p)| **p > 0.5)
                .fold(0, |m, (j, _)| m | 1 << j),
            LabelKind::Number => Vocab::number_code(probs[0] as f64).unwrap_or(0),
        }
    }

    /// A code's training targets: 0/1 per class (a multi-label model's
    /// row), or the number (a regressor's).
    pub fn targets(&self, code: usize) -> Vec<f32> {
        match self.kind {
            LabelKind::Number => vec![Vocab::number(code) as f32],
            _ => (0..self.names.len())
                .map(move |j| f32::from(code >> j & 1 == 1))
                .collect(),
        }
    }

    /// Outputs per row of the workspace's model.
    pub fn width(&self) -> usize {
        match self.kind {
            LabelKind::Number => 1,
            _ => self.names.len(),
        }
    }

    /// Whether a code is a label this vocabulary can hold.
    pub fn holds(&self, code: usize) -> bool {
        match self.kind {
            LabelKind::Class => code < self.names.len(),
            LabelKind::Set => code >> self.names.len() == 0,
            LabelKind::Number => Vocab::number(code).is_finite(),
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
            kind: LabelKind::Set,
        };
        let code = Vocab::set_code(&[0, 2]);
        assert_eq!(code, 5);
        assert_eq!(v.name(code), "cat|bird");
        assert_eq!(v.name(0), "");
        assert_eq!(v.classes_of(code), [0, 2]);
        assert_eq!(v.targets(code), [1.0, 0.0, 1.0]);
        assert_eq!(v.predicted(&[0.9, 0.5, 0.51]), 5);
        assert!(v.holds(7) && !v.holds(8));
        let s = Vocab::single(&v.names);
        assert_eq!(
            (s.name(2), s.predicted(&[0.1, 0.2, 0.7])),
            ("bird".into(), 2)
        );
        assert!(s.holds(2) && !s.holds(3));
    }

    #[test]
    fn numbers_are_their_bits_and_read_back_whole() {
        let v = Vocab {
            names: vec!["price".into()],
            kind: LabelKind::Number,
        };
        let code = Vocab::number_code(0.1 + 0.2).unwrap();
        assert_eq!(v.name(code).parse::<f64>().unwrap(), 0.1 + 0.2);
        assert_eq!(Vocab::number_code(-0.0), Vocab::number_code(0.0));
        assert_eq!(Vocab::number_code(f64::NAN), None);
        assert_eq!(v.name(Vocab::number_code(-2.5).unwrap()), "-2.5");
        assert!(v.holds(Vocab::number_code(-1e300).unwrap()));
        assert!(!v.holds(f64::INFINITY.to_bits() as usize));
        assert_eq!(v.targets(Vocab::number_code(4.0).unwrap()), [4.0]);
        assert_eq!(v.width(), 1);
        assert_eq!(v.predicted(&[2.5]), Vocab::number_code(2.5).unwrap());
    }
}
