use super::*;
use crate::buffer::BufferedMessage;

const STALL: Duration = Duration::from_millis(50);

fn message(text_bytes: usize) -> TailEvent {
    TailEvent::Message {
        epoch: "e".into(),
        offset: 1,
        message: BufferedMessage {
            author: "a".into(),
            text: "x".repeat(text_bytes),
            send_time: String::new(),
        },
        traceparent: None,
    }
}

fn queue(bytes: usize, pool: &QueuePool) -> (Queue, Receiver) {
    super::queue(16, bytes, pool.clone(), STALL)
}

#[tokio::test]
async fn live_is_cut_once_its_bytes_are_queued_and_not_before() {
    let pool = QueuePool::new(1 << 20);
    let (q, rx) = queue(200, &pool);
    assert!(q.offer(message(100)).is_ok());
    assert_eq!(q.offer(message(100)), Err(Refused::Cut(Cut::Behind)));
    assert!(pool.queued() > 100);
    drop(rx.recv().await);
    assert_eq!(pool.queued(), 0, "taken: its bytes are back");
    assert!(q.offer(message(100)).is_ok());
}

#[tokio::test]
async fn the_pool_bounds_every_queue_together() {
    let pool = QueuePool::new(400);
    let (first, _rx1) = queue(1000, &pool);
    let (second, rx2) = queue(1000, &pool);
    assert!(first.offer(message(100)).is_ok());
    assert!(second.offer(message(100)).is_ok());
    assert_eq!(second.offer(message(100)), Err(Refused::Cut(Cut::Pool)));
    drop(rx2);
    assert!(pool.queued() < 200, "a dropped queue gives its bytes back");
    assert!(first.offer(message(100)).is_ok());
}

#[tokio::test]
async fn any_message_fits_an_empty_queue() {
    let pool = QueuePool::new(1000);
    let (q, _rx) = queue(100, &pool);
    assert!(q.offer(message(64 * 1024)).is_ok());
}

#[tokio::test]
async fn a_replay_waits_for_room_and_a_stalled_one_is_cut() {
    let pool = QueuePool::new(1 << 20);
    let (q, rx) = queue(200, &pool);
    assert!(q.put(message(100)).await.is_ok());
    // Room comes once the reader takes one.
    let take = async { rx.recv().await.is_some() }; // taken and dropped
    let (put, taken) = tokio::join!(q.put(message(100)), take);
    assert!(put.is_ok() && taken);
    // Nobody takes anything: cut after the stall bound, not before.
    let started = std::time::Instant::now();
    assert_eq!(q.put(message(100)).await, Err(Refused::Cut(Cut::Stalled)));
    assert!(started.elapsed() >= STALL);
    drop(rx);
    assert_eq!(q.put(message(100)).await, Err(Refused::Left));
}

#[tokio::test]
async fn a_cut_empties_the_queue_at_once_and_keeps_its_reason() {
    let pool = QueuePool::new(1 << 20);
    let (q, rx) = queue(1000, &pool);
    assert!(q.offer(message(100)).is_ok());
    assert!(q.offer(message(100)).is_ok());
    let ends = Ends {
        cut: CancellationToken::new(),
        cause: Arc::new(OnceLock::new()),
        counter: Counter::noop(),
        trim: Trim::default(),
    };
    // The browser's side is never polled again (a stalled response): the
    // reader alone frees what it held.
    ends.cut(Cut::Stalled, &q, 7);
    assert!(ends.cut.is_cancelled());
    assert_eq!(ends.cause.get(), Some(&Cut::Stalled));
    assert_eq!(pool.queued(), 0);
    drop(q);
    assert_eq!(rx.recv().await, None);
}

#[tokio::test]
async fn the_browser_gets_what_was_queued_then_the_end() {
    let pool = QueuePool::new(1 << 20);
    let (q, rx) = queue(1000, &pool);
    q.push_bare(message(1));
    assert!(q.offer(message(2)).is_ok());
    assert!(q.put(message(3)).await.is_ok());
    drop(q);
    for text_bytes in 1..=3 {
        let Some(TailEvent::Message { message, .. }) = rx.recv().await else {
            panic!("event {text_bytes}");
        };
        assert_eq!(message.text.len(), text_bytes);
    }
    assert_eq!(rx.recv().await, None);
    assert_eq!(pool.queued(), 0);
}

#[tokio::test]
async fn the_queue_holds_at_most_its_events() {
    let pool = QueuePool::new(1 << 20);
    let (q, _rx) = super::queue(2, 1 << 20, pool, STALL);
    assert!(q.offer(message(1)).is_ok());
    assert!(q.offer(message(1)).is_ok());
    assert_eq!(q.offer(message(1)), Err(Refused::Cut(Cut::Behind)));
}
