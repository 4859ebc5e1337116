//! What one collection's comparison found: the first differences, named, and a count of the
//! rest — never the values.

/// Differences listed per collection before the rest are only counted.
pub const SHOWN_DIFFERENCES: usize = 10;

/// What one collection's check found.
#[derive(Default)]
pub struct Findings {
    pub checked: u64,
    /// For a sample, how many points it was to compare: those asked for, or every point when
    /// the collection has fewer. `None` for a full comparison.
    pub asked: Option<u64>,
    pub differences: Vec<String>,
    pub more: u64,
    /// Said after the differences: what was not looked into.
    pub note: Option<String>,
}

impl Findings {
    pub fn differ(&mut self, what: String) {
        if self.differences.len() < SHOWN_DIFFERENCES {
            self.differences.push(what);
        } else {
            self.more += 1;
        }
    }

    pub fn is_clean(&self) -> bool {
        self.differences.is_empty()
    }

    /// A sample that compared fewer points than it was to (points deleted while it ran).
    pub fn fell_short(&self) -> bool {
        self.asked.is_some_and(|asked| self.checked < asked)
    }

    /// What was compared and what it showed, for the collection's line: never "identical" for
    /// a sample that fell short without saying so.
    pub fn verdict(&self) -> String {
        let compared = match self.asked {
            None => format!("{} compared (full)", self.checked),
            Some(asked) if self.fell_short() => format!(
                "{} compared (sample, SHORT of the {asked} it was to compare)",
                self.checked
            ),
            Some(_) => format!("{} compared (sample)", self.checked),
        };
        let outcome = match (self.is_clean(), self.fell_short()) {
            (false, _) => "DIFFERENT",
            (true, false) => "identical",
            (true, true) => "identical as far as compared, the rest unchecked",
        };
        format!("{compared}: {outcome}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_sample_is_never_called_identical_alone() {
        let sample = |checked, asked| Findings {
            checked,
            asked: Some(asked),
            ..Findings::default()
        };
        assert_eq!(
            sample(1000, 1000).verdict(),
            "1000 compared (sample): identical"
        );
        assert_eq!(
            sample(2, 1000).verdict(),
            "2 compared (sample, SHORT of the 1000 it was to compare): identical as far as \
             compared, the rest unchecked"
        );
        let mut differs = sample(2, 1000);
        differs.differ("id 1: payload differs".into());
        assert!(differs.verdict().ends_with(": DIFFERENT"));
        let full = Findings {
            checked: 5,
            ..Findings::default()
        };
        assert_eq!(full.verdict(), "5 compared (full): identical");
    }
}
