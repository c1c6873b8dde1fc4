//! Invariants of the comparator, path patterns, templates and statistics
//! over arbitrary input: no panics, symmetry where expected.

use std::time::Duration;

use bytes::Bytes;
use gateway_mirror::compare::PathPattern;
use gateway_mirror::endpoint::template;
use gateway_mirror::math::{mann_whitney, wilson_interval};
use gateway_mirror::{Comparator, CompareConfig, DefaultComparator, Observation};
use http::{HeaderMap, StatusCode};
use proptest::prelude::*;
use serde_json::Value;

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1e9f64..1e9).prop_map(Value::from),
        "[a-z0-9 ']{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z' .]{1,6}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn obs(v: &Value) -> Observation {
    Observation::response(
        StatusCode::OK,
        HeaderMap::new(),
        Bytes::from(serde_json::to_vec(v).unwrap()),
        Duration::ZERO,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn a_body_equals_itself(v in json()) {
        let c = DefaultComparator::new(&CompareConfig::default());
        prop_assert!(c.compare(&obs(&v), &obs(&v)).is_empty());
    }

    #[test]
    fn diffs_are_symmetric_in_count_and_fields_parse_as_patterns(a in json(), b in json()) {
        let c = DefaultComparator::new(&CompareConfig::default());
        let ab = c.compare(&obs(&a), &obs(&b));
        let ba = c.compare(&obs(&b), &obs(&a));
        prop_assert_eq!(ab.len(), ba.len());
        for d in &ab {
            // Every reported field can be used as an ignore pattern, and
            // ignoring it removes it.
            let p = PathPattern::parse(&d.field).unwrap();
            prop_assert!(p.matches(&d.field));
            let ignoring = DefaultComparator::new(&CompareConfig {
                ignore_paths: vec![d.field.clone()],
                ..CompareConfig::default()
            });
            prop_assert!(ignoring
                .compare(&obs(&a), &obs(&b))
                .iter()
                .all(|x| x.field != d.field));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(a in prop::collection::vec(any::<u8>(), 0..64), b in prop::collection::vec(any::<u8>(), 0..64), p in ".{0,24}") {
        let c = DefaultComparator::new(&CompareConfig { ignore_paths: vec![p.clone()], ..CompareConfig::default() });
        let o = |x: &Vec<u8>| Observation::response(StatusCode::OK, HeaderMap::new(), Bytes::from(x.clone()), Duration::ZERO);
        let _ = c.compare(&o(&a), &o(&b));
        let _ = PathPattern::parse(&p);
        let t = template(&p);
        prop_assert!(t.starts_with('/'));
    }

    #[test]
    fn wilson_bounds_bracket_the_rate(n in 1u64..10_000, k in 0u64..10_000, z in 0.5f64..4.0) {
        let k = k.min(n);
        let (lo, hi) = wilson_interval(k, n, z);
        let p = k as f64 / n as f64;
        prop_assert!(0.0 <= lo && lo <= p + 1e-12 && p <= hi + 1e-12 && hi <= 1.0);
    }

    #[test]
    fn mann_whitney_p_values_are_probabilities(x in prop::collection::vec(0.0f64..100.0, 1..40), y in prop::collection::vec(0.0f64..100.0, 1..40)) {
        let r = mann_whitney(&x, &y).unwrap();
        prop_assert!((0.0..=1.0).contains(&r.p_greater));
        prop_assert!((0.0..=1.0).contains(&r.p_two_sided));
        prop_assert!((0.0..=1.0).contains(&r.effect));
        let s = mann_whitney(&y, &x).unwrap();
        prop_assert!((r.u + s.u - (x.len() * y.len()) as f64).abs() < 1e-9);
    }
}
