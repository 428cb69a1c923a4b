//! The zoo's tests: published backbone counts, every detector built and run, stage boundaries found.
//! (One test binary: every file links tract, and each binary costs CI a link.)

mod backbones;
mod detectors;
mod stage_truth;

/// The `backbone+neck+head` combinations with `head` that a test goes
/// through: every one, or with `ZOO_ONLY=text` in the environment (a
/// developer's filter) those whose name contains `text`. The combinations
/// left out are printed as skipped, and a filter that matches no
/// combination of the zoo, whatever its head, fails the test: a misspelt
/// filter would otherwise check nothing and pass.
fn combinations(head: &str) -> Vec<String> {
    let with = |head: &str| -> Vec<String> {
        edgewise_zoo::backbones::NAMES
            .iter()
            .flat_map(|backbone| {
                edgewise_zoo::necks::NAMES
                    .iter()
                    .map(move |neck| format!("{backbone}+{neck}+{head}"))
            })
            .collect()
    };
    let all = with(head);
    let Ok(only) = std::env::var("ZOO_ONLY") else {
        return all;
    };
    assert!(
        edgewise_zoo::heads::NAMES
            .iter()
            .any(|&h| with(h).iter().any(|c| c.contains(only.as_str()))),
        "ZOO_ONLY={only:?} matches no backbone+neck+head combination of the zoo \
         (backbones {:?}, necks {:?}, heads {:?}); unset it to test every one",
        edgewise_zoo::backbones::NAMES,
        edgewise_zoo::necks::NAMES,
        edgewise_zoo::heads::NAMES
    );
    let (kept, skipped): (Vec<String>, Vec<String>) =
        all.into_iter().partition(|c| c.contains(only.as_str()));
    if !skipped.is_empty() {
        eprintln!(
            "skipped {} of {} combinations with {head} (ZOO_ONLY={only:?}): {}",
            skipped.len(),
            skipped.len() + kept.len(),
            skipped.join(", ")
        );
    }
    kept
}
