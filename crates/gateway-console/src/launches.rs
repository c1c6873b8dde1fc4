//! Dark-launch score and verdict over time, for the console's chart. The
//! gateway samples each launch's summary once a minute (and when the chart
//! is asked for, at most every [`MIN_STEP_SECS`]); each launch keeps its
//! last [`POINTS`] points (a day at one a minute), at most
//! [`MAX_LAUNCHES`] launches: a few hundred kilobytes at most.

use std::collections::{HashMap, VecDeque};

use parking_lot::Mutex;
use serde::Serialize;

/// Points kept per launch.
pub const POINTS: usize = 1440;
/// Launches kept at most (the oldest-sampled goes first).
pub const MAX_LAUNCHES: usize = 64;
/// Closest two points may be.
pub const MIN_STEP_SECS: u64 = 10;

/// One sample of a launch.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ScorePoint {
    /// Unix seconds.
    pub t: u64,
    /// Confidence score, 0 to 100.
    pub score: u8,
    /// Compared samples so far.
    pub samples: u64,
    /// Verdict name.
    pub verdict: String,
}

/// Score history of every launch.
#[derive(Debug, Default)]
pub struct LaunchHistory {
    launches: Mutex<HashMap<String, VecDeque<ScorePoint>>>,
}

impl LaunchHistory {
    /// Adds a point, unless the launch's last one is under
    /// [`MIN_STEP_SECS`] old.
    pub fn record(&self, name: &str, point: ScorePoint) {
        let mut map = self.launches.lock();
        if !map.contains_key(name) && map.len() >= MAX_LAUNCHES {
            if let Some(stale) = map
                .iter()
                .min_by_key(|(_, v)| v.back().map_or(0, |p| p.t))
                .map(|(k, _)| k.clone())
            {
                map.remove(&stale);
            }
        }
        let points = map.entry(name.to_string()).or_default();
        if points
            .back()
            .is_some_and(|last| point.t < last.t + MIN_STEP_SECS)
        {
            return;
        }
        if points.len() == POINTS {
            points.pop_front();
        }
        points.push_back(point);
    }

    /// A launch's points, oldest first.
    pub fn points(&self, name: &str) -> Vec<ScorePoint> {
        self.launches
            .lock()
            .get(name)
            .map(|v| v.iter().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(t: u64, score: u8) -> ScorePoint {
        ScorePoint {
            t,
            score,
            samples: t,
            verdict: "keep_observing".into(),
        }
    }

    #[test]
    fn keeps_a_bounded_spaced_series() {
        let h = LaunchHistory::default();
        h.record("a", p(100, 10));
        h.record("a", p(105, 20)); // too close: dropped
        h.record("a", p(110, 30));
        assert_eq!(
            h.points("a").iter().map(|p| p.score).collect::<Vec<_>>(),
            vec![10, 30]
        );
        for i in 0..POINTS as u64 + 5 {
            h.record("b", p(1000 + i * 60, 1));
        }
        let b = h.points("b");
        assert_eq!(b.len(), POINTS);
        assert_eq!(b[0].t, 1000 + 5 * 60);
        assert!(h.points("zzz").is_empty());
    }
}
