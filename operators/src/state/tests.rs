//! Unit tests of the keyed state store.

use super::*;

#[test]
fn group_entries_lists_one_group_in_insertion_order() {
    let mut store = KeyedState::<u32>::default();
    let key = |tool_id, recipe_id, parameter| ChartKeyRef {
        tool_id,
        recipe_id,
        parameter,
    };
    store.insert(key("T1", "R1", "b"), 1);
    store.insert(key("T1", "R2", "a"), 2);
    store.insert(key("T1", "R1", "a"), 3);
    let entries: Vec<_> = store.group_entries("T1", "R1").unwrap().collect();
    assert_eq!(entries, vec![("b", &1), ("a", &3)]);
    assert!(store.group_entries("T2", "R1").is_none());
    assert!(store.group_entries("T1", "R3").is_none());
}

/// `collect_mut_where` gives exactly the kept states with their keys (short and long
/// ids alike), and its states are the store's own.
#[test]
fn collect_mut_where_gives_the_kept_states_with_their_keys() {
    let mut store = KeyedState::<u32>::default();
    let long_tool = "IMPLANTER-WITH-A-NAME-TOO-LONG-TO-KEEP-INLINE";
    let long_parameter = "a_parameter_name_longer_than_the_inline_room";
    let key = |tool_id, recipe_id, parameter| ChartKeyRef {
        tool_id,
        recipe_id,
        parameter,
    };
    for (i, k) in [
        key("T1", "R1", "a"),
        key("T1", "R1", "b"),
        key("T2", "R1", "a"),
        key(long_tool, "R9", long_parameter),
        key(long_tool, "R9", "c"),
    ]
    .into_iter()
    .enumerate()
    {
        store.insert(k, i as u32);
    }
    let mut kept: Vec<(ChartKeyRef<'_>, u32)> = store
        .collect_mut_where(|v| v % 2 == 1 || *v == 4)
        .into_iter()
        .map(|(k, v)| {
            *v += 10;
            (k, *v)
        })
        .collect();
    kept.sort();
    let mut expected = vec![
        (key("T1", "R1", "b"), 11),
        (key(long_tool, "R9", long_parameter), 13),
        (key(long_tool, "R9", "c"), 14),
    ];
    expected.sort();
    assert_eq!(kept, expected);
    let mut all: Vec<u32> = store.iter().map(|(_, v)| *v).collect();
    all.sort();
    assert_eq!(all, vec![0, 2, 11, 13, 14]);
    assert!(store.collect_mut_where(|_| false).is_empty());
}

#[test]
fn short_eq_matches_slice_equality() {
    let words = [
        "",
        "a",
        "b",
        "ab",
        "ba",
        "abc",
        "acc",
        "abb",
        "abcd",
        "abce",
        "p_imr",
        "p_xbr",
        "p_ewma",
        "p_xbar",
        "TOOL-000",
        "TOOL-001",
        "TOOL-0001",
        "TOOL-0002",
        "1OOL-0001",
        "ION-01/B11_30KEV",
        "ION-01/B11_30KEW",
        "JON-01/B11_30KEV",
        "ION-01/B11_30KEV+",
        "ION-01/B11_30KEV-",
        "ION-01/B11_30KEV+-",
        "ION-01/B11_3XKEV+-",
        "gas_flow_deviation_sccm",
        "gas_flow_deviation_sccn",
        "gas_flow_deviatioX_sccm",
        "gas_flow_deviation_sccm_",
        "gas_flow_deviation_sccm__",
        "gas_flow_deviation_sccm_-",
    ];
    for a in words {
        for b in words {
            assert_eq!(
                short_eq(a.as_bytes(), b.as_bytes()),
                a == b,
                "{a:?} vs {b:?}"
            );
        }
    }
}

#[test]
fn entries_restored_by_name_are_adopted_once_by_a_tagged_lookup() {
    let key = ChartKeyRef {
        tool_id: "ION-01",
        recipe_id: "R1",
        parameter: "beam_current_mA",
    };
    let mut st = KeyedState::<u32>::default();
    st.insert(key, 7);
    let mut adopted = 0;
    let mut group = st.group("ION-01", "R1");
    assert_eq!(
        *group.get_or_insert_with("beam_current_mA", 3, || 0, |_| adopted += 1),
        7
    );
    *group.get_or_insert_with("dose_uniformity_pct", 4, || 1, |_| panic!("new")) += 1;
    assert_eq!(
        *group.get_or_insert_with("beam_current_mA", 3, || 0, |_| panic!("tagged")),
        7
    );
    // Another tag for a known name (another monitor over the same store) adopts it.
    assert_eq!(
        *group.get_or_insert_with("beam_current_mA", 9, || 0, |s| *s += 1),
        8
    );
    assert_eq!(adopted, 1);
    assert_eq!(st.len(), 2);
    assert_eq!(st.get(key), Some(&8));
    // A restore clears the tag again.
    st.insert(key, 5);
    let mut group = st.group("ION-01", "R1");
    assert_eq!(
        *group.get_or_insert_with("beam_current_mA", 9, || 0, |s| *s += 10),
        15
    );
}

#[test]
fn another_callers_tags_adopt_entries_by_name() {
    let mut st = KeyedState::<&str>::default();
    let mut group = st.group("T", "R");
    let keep = |_: &mut &str| {};
    *group.get_or_insert_with("beam", 1, || "beam", keep) = "beam";
    *group.get_or_insert_with("dose", 2, || "dose", keep) = "dose";
    // Another configuration tags the same parameters 3 and 4.
    assert_eq!(*group.get_or_insert_with("dose", 4, || "new", keep), "dose");
    assert_eq!(*group.get_or_insert_with("beam", 3, || "new", keep), "beam");
    assert_eq!(*group.get_or_insert_with("beam", 3, || "new", keep), "beam");
    assert_eq!(*group.get_or_insert_with("dose", 4, || "new", keep), "dose");
    assert_eq!(st.len(), 2);
}

#[test]
fn keys_do_not_collide_and_round_trip() {
    let mut st = KeyedState::<u32>::default();
    let a = ChartKeyRef {
        tool_id: "a\u{1f}b",
        recipe_id: "c",
        parameter: "p",
    };
    let b = ChartKeyRef {
        tool_id: "a",
        recipe_id: "b\u{1f}c",
        parameter: "p",
    };
    let c = ChartKeyRef {
        tool_id: "ab",
        recipe_id: "",
        parameter: "p",
    };
    let d = ChartKeyRef {
        tool_id: "a",
        recipe_id: "b",
        parameter: "p",
    };
    *st.get_or_insert_with(a, || 0) += 1;
    *st.get_or_insert_with(b, || 10) += 1;
    *st.get_or_insert_with(a, || 0) += 1;
    *st.get_or_insert_with(c, || 20) += 1;
    *st.get_or_insert_with(d, || 30) += 1;
    assert_eq!(st.len(), 4);
    assert_eq!(st.get(a), Some(&2));
    assert_eq!(st.get(b), Some(&11));
    assert_eq!(st.get(c), Some(&21));
    assert_eq!(st.get(d), Some(&31));
    let keys: Vec<_> = st.sorted().into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, vec![d, b, a, c]);
}

#[test]
fn long_ids_and_many_groups_are_found() {
    let mut st = KeyedState::<usize>::default();
    let long_tool = "IMPLANTER-WITH-A-VERY-LONG-NAME-0001";
    let long_param = "a_parameter_name_longer_than_23_bytes";
    let mut keys = vec![];
    for i in 0..5000 {
        let tool = if i % 7 == 0 {
            format!("{long_tool}-{i}")
        } else {
            format!("T{i}")
        };
        for p in [long_param, "short", "exactly_23_bytes_long_x"] {
            keys.push((tool.clone(), format!("R{}", i % 3), p));
        }
    }
    let tag = |p: &str| 1 + u64::from(p == long_param) + 2 * u64::from(p == "short");
    for (n, (t, r, p)) in keys.iter().enumerate() {
        let mut group = st.group(t, r);
        assert_eq!(*group.get_or_insert_with(p, tag(p), || n, |_| {}), n);
    }
    assert_eq!(st.len(), keys.len());
    for (n, (t, r, p)) in keys.iter().enumerate() {
        let key = ChartKeyRef {
            tool_id: t,
            recipe_id: r,
            parameter: p,
        };
        assert_eq!(st.get(key), Some(&n), "{key:?}");
        let mut group = st.group(t, r);
        assert_eq!(*group.get_or_insert_with(p, tag(p), || 0, |_| panic!()), n);
    }
    assert_eq!(st.len(), keys.len());
    let mut listed: Vec<usize> = st.iter().map(|(_, &n)| n).collect();
    listed.sort_unstable();
    assert_eq!(listed, (0..keys.len()).collect::<Vec<_>>());
    assert!(
        st.iter()
            .all(|(k, &n)| k.tool_id == keys[n].0 && k.parameter == keys[n].2)
    );
    assert_eq!(st.long_names.len(), 1);
}
