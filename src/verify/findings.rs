//! What one collection's comparison found: the first differences, named, and a count of the
//! rest — never the values.

/// Differences listed per collection before the rest are only counted.
pub const SHOWN_DIFFERENCES: usize = 10;

/// What one collection's check found.
#[derive(Default)]
pub struct Findings {
    pub checked: u64,
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
}
