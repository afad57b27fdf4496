//! Checks the shared test helpers themselves.

mod common;

#[test]
fn netns_is_removed_on_drop() {
    if !common::privileged("netns_is_removed_on_drop") {
        return;
    }
    let name = {
        let ns = common::Netns::new("selftest");
        assert!(ns.try_sh("ip link show lo | grep -q UP"));
        ns.name.clone()
    };
    let list = common::sh("ip netns list");
    assert!(!list.contains(&name), "{name} still exists: {list}");
}
