//! The mark file: what a run leaves, what the next one reads.

use super::*;

fn read(dir: &Path) -> i128 {
    fs::read_to_string(dir.join(MARK_FILE))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn the_first_run_has_no_floor_and_writes_a_mark_ahead_of_the_clock() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mark = SendTimeMark::open(&state, 1_000).unwrap();
    assert_eq!(mark.floor(), 0);
    assert_eq!(read(&state), 1_000 + LEAD_NANOS);
}

#[test]
fn stamps_past_the_mark_wait_for_a_new_one_and_close_leaves_the_exact_last() {
    let dir = tempfile::tempdir().unwrap();
    let mut mark = SendTimeMark::open(dir.path(), 0).unwrap();
    mark.cover(1).unwrap();
    let far = 10 * LEAD_NANOS;
    mark.cover(far).unwrap();
    assert!(read(dir.path()) >= far, "durable before the stamp is used");
    mark.cover(far + 1).unwrap();
    mark.close(far + 1);
    assert_eq!(read(dir.path()), far + 1);
    drop(mark);
    // The next run, on a clock far behind: its floor is the last stamp.
    let next = SendTimeMark::open(dir.path(), 5).unwrap();
    assert_eq!(next.floor(), far + 1);
    assert_eq!(read(dir.path()), far + 1 + LEAD_NANOS);
}

#[test]
fn a_crash_leaves_a_mark_at_or_above_every_stamp() {
    let dir = tempfile::tempdir().unwrap();
    let mut mark = SendTimeMark::open(dir.path(), 0).unwrap();
    let mut newest = 0;
    for step in 1..=50 {
        newest = step * LEAD_NANOS / 7;
        mark.cover(newest).unwrap();
        assert!(read(dir.path()) >= newest, "step {step}");
    }
    drop(mark); // no close: as after kill -9
    assert!(SendTimeMark::open(dir.path(), 0).unwrap().floor() >= newest);
}

#[test]
fn a_corrupt_mark_or_an_unusable_directory_is_refused_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(MARK_FILE), "yesterday\n").unwrap();
    let e = SendTimeMark::open(dir.path(), 0).err().unwrap().to_string();
    assert!(
        e.contains("MESSENGER_STATE_DIR") && e.contains("yesterday"),
        "{e}"
    );
    let file = dir.path().join("a-file");
    fs::write(&file, "").unwrap();
    let e = SendTimeMark::open(&file, 0).err().unwrap().to_string();
    assert!(
        e.contains("MESSENGER_STATE_DIR") && e.contains("a-file"),
        "{e}"
    );
}
