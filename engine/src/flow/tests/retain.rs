//! `retain`: how long and how many finished runs a flow keeps.

use super::*;

#[test]
fn retain_reads_an_age_and_a_count_and_points_at_bad_values() {
    let flow = load("name = \"x\"\nretain = { age = \"7d\", runs = 10000 }\n");
    assert_eq!(flow.retain.age, Some(Duration::from_secs(7 * 24 * 3600)));
    assert_eq!(flow.retain.runs, Some(10000));
    assert_eq!(
        load("name = \"x\"\n").retain,
        crate::flow::Retain::default()
    );
    assert_eq!(
        errors("name = \"x\"\nretain = { age = \"soon\", runs = 0, keep = 1 }\n"),
        vec![
            "2:18: `retain.age` = \"soon\" is not a duration (expected number at 0); \
             write it like \"5s\" or \"2m 30s\""
                .to_owned(),
            "2:33: `retain.runs` must be a whole number of runs, at least 1".to_owned(),
            "2:36: unknown key `keep` in `retain`; allowed keys: age, runs".to_owned(),
        ]
    );
    assert_eq!(
        errors("name = \"x\"\nretain = \"7d\"\n"),
        vec![
            "2:10: `retain` must be a table such as `retain = { age = \"7d\", runs = 10000 }`, \
             found string"
                .to_owned()
        ]
    );
}
