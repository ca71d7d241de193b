//! BGPPeer `password` (a Secret in the config directory) as TCP MD5
//! signatures (RFC 2385), against FRR configured with the same password.

mod common;
use std::time::Duration;

use common::*;

const FRR: &str = r#"
frr defaults traditional
hostname tor
router bgp 65535
 bgp router-id 192.0.2.1
 no bgp network import-check
 neighbor 192.0.2.2 remote-as 65535
 neighbor 192.0.2.2 password s3cret-pw
 address-family ipv4 unicast
  network 198.18.7.0/24
 exit-address-family
"#;

fn secret(pw: &str) -> String {
    format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: bgp-secrets, namespace: calico-system}}\nstringData: {{tor-password: {pw}}}\n")
}

#[test]
fn md5_password_from_a_secret_matches_frr_and_a_wrong_one_never_connects() {
    let mut lab = Lab::new("md5");
    let k = lab.ns("k");
    let f = lab.ns("f");
    lab.link(&k, &["192.0.2.2/24"], &f, &["192.0.2.1/24"]);
    let frr = lab.frr("frr", &f, FRR);
    let peer = "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: tor}\nspec:\n  peerIP: 192.0.2.1\n  asNumber: 65535\n  password:\n    secretKeyRef:\n      name: bgp-secrets\n      key: tor-password\n";
    let kbgp = lab.kbgp(
        "kbgp",
        &k,
        "n1",
        &[
            ("node.yaml", &node_yaml("n1", &["192.0.2.2"], &["10.244.1.0/24"])),
            ("bgpconfig.yaml", "apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata: {name: default}\nspec: {asNumber: 65535}\n"),
            ("peer.yaml", peer),
            ("secret.yaml", &secret("s3cret-pw")),
        ],
    );
    kbgp.wait_established("192.0.2.1");
    kbgp.wait_received("192.0.2.1", "198.18.7.0/24");
    frr.wait_route("ipv4", "10.244.1.0/24");

    // A wrong password: the peer is reset and no session comes up again.
    kbgp.write("secret.yaml", &secret("wrong-pw"));
    wait_for("the session to go down", Duration::from_secs(15), || {
        let p = kbgp.peer("192.0.2.1")?;
        if p["state"] != "Established" {
            Ok(())
        } else {
            Err(p.to_string())
        }
    });
    std::thread::sleep(Duration::from_secs(8));
    let p = kbgp.peer("192.0.2.1").unwrap();
    assert_ne!(p["state"], "Established", "{p}");
    assert_eq!(
        p["established_count"], 0,
        "the reset peer is new and never came up: {p}"
    );
}
