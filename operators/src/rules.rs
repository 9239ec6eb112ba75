//! The eight run rules (Western Electric / Nelson), evaluated incrementally.
//!
//! Each plotted point is first turned into a *zone score* `s`: its distance from the center line
//! in units of one third of the distance to the control limit on its side. On a 3-sigma Shewhart
//! chart `s` is the point's distance in sigma; on an EWMA chart with exact limits the thirds follow
//! the time-varying limits. The rules then look only at `s` and at the direction of change:
//!
//! | rule | fires when |
//! |---|---|
//! | 1 | the point is beyond a control limit (`|s| > 3`) |
//! | 2 | nine points in a row on the same side of the center line |
//! | 3 | six points in a row steadily increasing or steadily decreasing |
//! | 4 | fourteen points in a row alternating up and down |
//! | 5 | two of three points in a row beyond 2 sigma on the same side (this point among them) |
//! | 6 | four of five points in a row beyond 1 sigma on the same side (this point among them) |
//! | 7 | fifteen points in a row within 1 sigma of the center line |
//! | 8 | eight points in a row beyond 1 sigma, on both sides of the center line |
//!
//! A point exactly on the center line breaks rule 2's run; a tie with the previous point breaks
//! rules 3 and 4. Rules keep firing on each point while their pattern holds; alert dedup folds
//! those repeats. The state is a few counters and 16-bit shift registers (no point history).

use serde::{Deserialize, Serialize};

/// A set of enabled run rules (bit `r - 1` for rule `r`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RuleSet(u8);

impl RuleSet {
    /// All eight rules.
    pub const ALL: RuleSet = RuleSet(0xff);
    /// No rules.
    pub const NONE: RuleSet = RuleSet(0);

    /// A set from rule numbers 1..=8; `Err(n)` names the first number out of range.
    pub fn from_numbers(numbers: &[u8]) -> Result<Self, u8> {
        let mut bits = 0u8;
        for &n in numbers {
            if !(1..=8).contains(&n) {
                return Err(n);
            }
            bits |= 1 << (n - 1);
        }
        Ok(RuleSet(bits))
    }

    /// Whether rule `n` (1..=8) is enabled.
    pub fn contains(self, n: u8) -> bool {
        (1..=8).contains(&n) && self.0 & (1 << (n - 1)) != 0
    }

    /// The enabled rule numbers in ascending order.
    pub fn numbers(self) -> impl Iterator<Item = u8> {
        let mut bits = self.0;
        std::iter::from_fn(move || {
            let n = bits.trailing_zeros() as u8;
            bits &= bits.wrapping_sub(1);
            (n < 8).then_some(n + 1)
        })
    }

    /// Whether no rule is in the set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether any rule other than rule 1 is enabled.
    pub fn has_run_rules(self) -> bool {
        self.0 & 0xfe != 0
    }
}

/// Incremental state of the run rules for one plotted statistic (24 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct RuleState {
    /// The previous plotted value (for trends and alternation); meaningful once `points > 0`.
    last: f64,
    /// Shift registers, newest point in bit 0: beyond +1, -1, +2, -2 sigma.
    above1: u16,
    below1: u16,
    above2: u16,
    below2: u16,
    /// Points seen, saturating at 255.
    points: u8,
    /// Current run on one side: positive above, negative below, 0 on the center line.
    side_run: i8,
    /// Current monotone run in differences: positive increasing, negative decreasing.
    trend_run: i8,
    /// Number of consecutive differences that alternate in sign, ending at this point.
    alternations: u8,
    /// Sign of the last difference (-1, 0, 1).
    last_dir: i8,
}

const fn mask(n: u32) -> u16 {
    ((1u32 << n) - 1) as u16
}

impl RuleState {
    /// Adds a point with zone score `s` and plotted value `value`, and returns the set of
    /// enabled rules that fire on it.
    pub fn push(&mut self, value: f64, s: f64, enabled: RuleSet) -> RuleSet {
        let shift = |r: u16, bit: bool| (r << 1) | bit as u16;
        let had_last = self.points > 0;
        self.above1 = shift(self.above1, s > 1.0);
        self.below1 = shift(self.below1, s < -1.0);
        self.above2 = shift(self.above2, s > 2.0);
        self.below2 = shift(self.below2, s < -2.0);
        self.points = self.points.saturating_add(1);

        self.side_run = if s > 0.0 {
            if self.side_run > 0 {
                self.side_run.saturating_add(1)
            } else {
                1
            }
        } else if s < 0.0 {
            if self.side_run < 0 {
                self.side_run.saturating_sub(1)
            } else {
                -1
            }
        } else {
            0
        };

        let prev = self.last;
        let dir = match had_last {
            true if value > prev => 1i8,
            true if value < prev => -1,
            _ => 0,
        };
        self.trend_run = match dir {
            1 if self.trend_run > 0 => self.trend_run.saturating_add(1),
            -1 if self.trend_run < 0 => self.trend_run.saturating_sub(1),
            d => d,
        };
        self.alternations = if dir != 0 && dir == -self.last_dir {
            self.alternations.saturating_add(1)
        } else if dir != 0 {
            1
        } else {
            0
        };
        self.last_dir = dir;
        self.last = value;

        // This point and at least one of the two before it.
        let two_of_three = |r: u16| r & 1 == 1 && r & 0b110 != 0;
        // This point and at least three of the four before it: bit k of 0xe880 is set for
        // the four-bit values k with three or four bits set (7, 11, 13, 14, 15).
        let four_of_five = |r: u16| r & 1 == 1 && (0xe880u16 >> ((r >> 1) & 0xf)) & 1 == 1;
        let beyond1 = self.above1 | self.below1;
        let bit = |hit: bool, rule: u8| u8::from(hit) << (rule - 1);
        let fired = bit(s.abs() > 3.0, 1)
            | bit(self.side_run.unsigned_abs() >= 9, 2)
            // Six points steadily moving = five consecutive differences of one sign.
            | bit(self.trend_run.unsigned_abs() >= 5, 3)
            // Fourteen points alternating = thirteen differences alternating in sign.
            | bit(self.alternations >= 13, 4)
            | bit(two_of_three(self.above2) || two_of_three(self.below2), 5)
            | bit(four_of_five(self.above1) || four_of_five(self.below1), 6)
            | bit(self.points >= 15 && beyond1 & mask(15) == 0, 7)
            | bit(
                self.points >= 8
                    && beyond1 & mask(8) == mask(8)
                    && self.above1 & mask(8) != 0
                    && self.below1 & mask(8) != 0,
                8,
            );
        RuleSet(fired & enabled.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds zone scores (the plotted value equals the score) and returns, per point, whether
    /// `rule` fired, with only that rule enabled.
    fn fires(rule: u8, scores: &[f64]) -> Vec<bool> {
        let only = RuleSet::from_numbers(&[rule]).unwrap();
        let mut st = RuleState::default();
        scores
            .iter()
            .map(|&s| st.push(s, s, only).contains(rule))
            .collect()
    }

    fn fired_at(rule: u8, scores: &[f64]) -> Vec<usize> {
        fires(rule, scores)
            .iter()
            .enumerate()
            .filter_map(|(i, &f)| f.then_some(i))
            .collect()
    }

    #[test]
    fn rule_sets_parse_and_reject() {
        let set = RuleSet::from_numbers(&[1, 5, 6]).unwrap();
        assert_eq!(set.numbers().collect::<Vec<_>>(), vec![1, 5, 6]);
        assert!(set.has_run_rules());
        assert!(!RuleSet::from_numbers(&[1]).unwrap().has_run_rules());
        assert_eq!(RuleSet::from_numbers(&[1, 9]), Err(9));
        assert_eq!(RuleSet::from_numbers(&[0]), Err(0));
    }

    #[test]
    fn rule1_beyond_three_sigma_and_near_miss() {
        assert_eq!(fired_at(1, &[0.0, 3.01, -3.2, 2.99, -3.0, 3.0]), vec![1, 2]);
    }

    #[test]
    fn rule2_nine_on_one_side() {
        let nine = [0.5; 9];
        assert_eq!(fired_at(2, &nine), vec![8]);
        // Eight above, then a point on the center line, then eight more: never nine.
        let mut near = vec![0.5; 8];
        near.push(0.0);
        near.extend([0.5; 8]);
        assert!(fired_at(2, &near).is_empty());
        // Below works too, and the run keeps firing while it lasts.
        assert_eq!(fired_at(2, &[-0.1; 10]), vec![8, 9]);
    }

    #[test]
    fn rule3_six_trending() {
        let up = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6];
        assert_eq!(fired_at(3, &up), vec![5]);
        let down = [0.6, 0.5, 0.4, 0.3, 0.2, 0.1];
        assert_eq!(fired_at(3, &down), vec![5]);
        // Five increasing points, then a tie: no signal.
        let near = [0.1, 0.2, 0.3, 0.4, 0.5, 0.5, 0.6];
        assert!(fired_at(3, &near).is_empty());
    }

    #[test]
    fn rule4_fourteen_alternating() {
        let alt: Vec<f64> = (0..14)
            .map(|i| if i % 2 == 0 { 0.5 } else { -0.5 })
            .collect();
        assert_eq!(fired_at(4, &alt), vec![13]);
        assert!(fired_at(4, &alt[..13]).is_empty());
        // A tie in the middle restarts the count: 7 + 1 + 12 points, never 14 alternating.
        let mut broken = alt[..7].to_vec();
        broken.push(alt[6]);
        broken.extend(&alt[1..13]);
        assert!(fired_at(4, &broken).is_empty());
        // One more alternating point completes fourteen after the tie.
        broken.push(alt[13]);
        assert_eq!(fired_at(4, &broken), vec![20]);
        // Two steps in the same direction also break it.
        let mut same = alt[..8].to_vec();
        same.push(alt[7] - 0.1);
        same.extend(&alt[..11]);
        assert!(fired_at(4, &same).is_empty());
    }

    #[test]
    fn rule5_two_of_three_beyond_two_sigma() {
        assert_eq!(fired_at(5, &[2.1, 0.0, 2.5]), vec![2]);
        assert_eq!(fired_at(5, &[-2.1, -2.2]), vec![1]);
        // Opposite sides do not count together, nor do points four apart.
        assert!(fired_at(5, &[2.1, -2.1, 0.0]).is_empty());
        assert!(fired_at(5, &[2.1, 0.0, 0.0, 2.1]).is_empty());
        assert!(fired_at(5, &[2.0, 2.0]).is_empty());
    }

    #[test]
    fn rule6_four_of_five_beyond_one_sigma() {
        assert_eq!(fired_at(6, &[1.5, 1.2, 0.0, 1.1, 1.9]), vec![4]);
        assert!(fired_at(6, &[1.5, 1.2, 0.0, 1.1, 0.5]).is_empty());
        assert!(fired_at(6, &[1.5, -1.2, 1.5, 0.5, 1.9]).is_empty());
        assert_eq!(fired_at(6, &[1.5, -1.2, 1.5, 1.1, 1.9]), vec![4]);
        assert_eq!(fired_at(6, &[-1.5, -1.2, -1.3, -1.1]), vec![3]);
    }

    #[test]
    fn rule7_fifteen_within_one_sigma() {
        let hugging: Vec<f64> = (0..15)
            .map(|i| if i % 3 == 0 { 0.9 } else { -0.4 })
            .collect();
        assert_eq!(fired_at(7, &hugging), vec![14]);
        let mut near = hugging.clone();
        near[7] = 1.1;
        assert!(fired_at(7, &near).is_empty());
    }

    #[test]
    fn rule8_eight_beyond_one_sigma_both_sides() {
        let mixture = [1.5, -1.5, 1.2, -2.0, 1.1, -1.1, 2.5, -1.3];
        assert_eq!(fired_at(8, &mixture), vec![7]);
        // All on one side is a shift, not a mixture.
        assert!(fired_at(8, &[1.5; 8]).is_empty());
        let mut near = mixture;
        near[3] = -0.9;
        assert!(fired_at(8, &near).is_empty());
    }

    #[test]
    fn window_counts_match_popcount() {
        for r in 0u16..32 {
            let two = r & 1 == 1 && r & 0b110 != 0;
            assert_eq!(two, r & 1 == 1 && (r & mask(3)).count_ones() >= 2, "{r:b}");
            let four = r & 1 == 1 && (0xe880u16 >> ((r >> 1) & 0xf)) & 1 == 1;
            assert_eq!(four, r & 1 == 1 && (r & mask(5)).count_ones() >= 4, "{r:b}");
        }
    }

    #[test]
    fn disabled_rules_stay_silent() {
        let mut st = RuleState::default();
        let fired = st.push(10.0, 10.0, RuleSet::from_numbers(&[2]).unwrap());
        assert_eq!(fired, RuleSet::NONE);
    }
}
