//! A consumer group on a real Kafka-protocol broker resumes exactly where it left off: the
//! offset it commits is the next unread message, so a member that replaces another (after a
//! restart or a crash) neither skips a message nor starts over.

use sloop_kit::EventBus;
use sloop_kit::event::Message;
use sloop_kit::testing::Broker;

fn message(topic: &str, n: usize) -> Message {
    Message {
        topic: topic.to_owned(),
        // One key: one partition, so the order and the offsets are known.
        key: "subject".to_owned(),
        headers: Vec::new(),
        payload: format!("message {n}").into_bytes(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_member_resumes_at_the_first_message_not_handled() {
    let mut broker = Broker::start().await;
    let bus = EventBus::connect(&broker.url(), "offsets-test").unwrap();
    let topic = "offsets.resume".to_owned();
    bus.ensure_topics(std::slice::from_ref(&topic))
        .await
        .unwrap();
    for n in 0..6 {
        bus.publish(&message(&topic, n)).await.unwrap();
    }

    let mut first = bus
        .subscribe("resumer", std::slice::from_ref(&topic))
        .unwrap();
    for n in 0..3 {
        let delivery = first.next().await.unwrap();
        assert_eq!(
            delivery.message.payload,
            format!("message {n}").into_bytes()
        );
        first.commit(&delivery).unwrap();
    }
    // Closing commits what was stored, as the 500 ms auto-commit would have.
    first.close().await;

    let mut second = bus
        .subscribe("resumer", std::slice::from_ref(&topic))
        .unwrap();
    let next = tokio::time::timeout(std::time::Duration::from_secs(60), second.next())
        .await
        .expect("the second member receives the rest")
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&next.message.payload),
        "message 3",
        "the next unread message, neither skipped nor repeated"
    );
    second.close().await;
    broker.stop().await;
}
