use crate::harness::*;
use std::time::Duration;

/// Two deploys of one app at once serialise; 50 concurrent reads during a deploy are answered.
#[test]
fn concurrent_deploys_serialise_and_reads_are_answered() {
    let a = Agent::start();
    let yaml = |n: u32| {
        format!(
            "services:\n  web:\n    image: {IMAGE}\n    command: sleep 3600\n    stop_grace_period: 1s\n    labels:\n      berth.scale: \"{n}\"\n"
        )
    };
    let p1 = a.template("race1", &yaml(3));
    let p2 = a.template("race2", &yaml(4));
    std::thread::scope(|s| {
        let d1 =
            s.spawn(|| a.berth(&["deploy", "-f", path_str(&p1), "--name", "race", "--detach"]));
        let d2 =
            s.spawn(|| a.berth(&["deploy", "-f", path_str(&p2), "--name", "race", "--detach"]));
        let readers: Vec<_> = (0..50)
            .map(|i| {
                let a = &a;
                s.spawn(move || {
                    let path = if i % 2 == 0 { "/v1/apps" } else { "/v1/ps" };
                    a.get_raw(path, true)
                })
            })
            .collect();
        for r in readers {
            let (status, _) = r.join().expect("reader").expect("answered");
            assert_eq!(status, 200);
        }
        assert!(d1.join().expect("d1").status.success());
        assert!(d2.join().expect("d2").status.success());
    });
    // Whichever came last wins, fully: 3 or 4 replicas, never a mix.
    let stored: berth::wire::InspectResponse =
        serde_json::from_str(&a.ok(&["inspect", "race", "--json"])).expect("json");
    let want = stored.spec.services["web"].replicas as usize;
    wait_until("the last deploy applied", Duration::from_secs(30), || {
        a.running("race").len() == want && a.engine_containers("race").len() == want
    });
}
