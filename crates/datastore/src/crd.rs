//! CustomResourceDefinitions generated from the Rust types the datastore
//! parses (`kbgp crd` prints them): the schema a cluster validates with is the
//! one kbgp reads with.
//!
//! kbgp's own group `kbgp.io/v1alpha1`: BGPConfiguration, BGPPeer, BGPFilter,
//! BGPAllowList (namespaced) and BGPNodeStatus (written by kbgp). For a
//! cluster without Calico, the `projectcalico.org/v3` kinds kbgp reads
//! (BGPConfiguration, BGPPeer, BGPFilter, Node) can be installed too, so the
//! seeds' YAML applies unchanged; their schemas leave out kbgp's own fields,
//! as Calico's do.

use schemars::generate::SchemaSettings;
use schemars::JsonSchema;
use serde_json::{json, Value};

use crate::cluster::{BgpNodeStatusSpec, BgpNodeStatusStatus};
use crate::resources::{
    BgpAllowListSpec, BgpConfigurationSpec, BgpFilterSpec, BgpPeerSpec, FilterRuleSpec, NodeBgp,
};

/// The OpenAPI v3 schema of `T`, made structural as Kubernetes requires.
pub fn schema_of<T: JsonSchema>() -> Value {
    let generator = SchemaSettings::openapi3()
        .with(|s| {
            s.inline_subschemas = true;
            s.meta_schema = None;
        })
        .with_transform(kube::core::schema::OptionalEnum)
        .with_transform(kube::core::schema::OptionalIntOrString)
        .with_transform(kube::core::schema::StructuralSchemaRewriter)
        .into_generator();
    let mut v = generator.into_root_schema_for::<T>().to_value();
    clean(&mut v);
    v
}

/// Drop what a CRD schema may not hold: titles, `$schema`, `default: null`
/// (defaults must validate and are applied by kbgp itself), and the
/// `nullable` variants of int-or-string fields.
fn clean(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.remove("title");
            m.remove("$schema");
            m.remove("default");
            if m.contains_key("x-kubernetes-int-or-string") {
                m.remove("type");
            }
            for (_, x) in m.iter_mut() {
                clean(x);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(clean),
        _ => {}
    }
}

/// Remove properties by name, at the top level of `spec` and in the items of
/// the named array properties.
fn without(mut schema: Value, fields: &[&str], arrays: &[&str]) -> Value {
    if let Some(props) = schema.get_mut("properties").and_then(|p| p.as_object_mut()) {
        for f in fields {
            props.remove(*f);
        }
    }
    for a in arrays {
        if let Some(props) = schema
            .pointer_mut(&format!("/properties/{a}/items/properties"))
            .and_then(|p| p.as_object_mut())
        {
            for f in FilterRuleSpec::KBGP_ONLY {
                props.remove(*f);
            }
        }
    }
    schema
}

struct Def {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    namespaced: bool,
    spec: Value,
    status: Option<Value>,
    columns: Value,
}

fn crd(d: Def) -> Value {
    let mut props = json!({
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        "spec": d.spec,
    });
    let mut version = json!({
        "name": d.version,
        "served": true,
        "storage": true,
        "additionalPrinterColumns": d.columns,
    });
    if let Some(st) = d.status {
        props["status"] = st;
        version["subresources"] = json!({"status": {}});
    }
    version["schema"] = json!({"openAPIV3Schema": {
        "type": "object",
        "properties": props,
    }});
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": format!("{}.{}", d.plural, d.group),
            "labels": {"app.kubernetes.io/part-of": "kbgp"},
        },
        "spec": {
            "group": d.group,
            "scope": if d.namespaced { "Namespaced" } else { "Cluster" },
            "names": {
                "kind": d.kind,
                "listKind": format!("{}List", d.kind),
                "plural": d.plural,
                "singular": d.singular,
            },
            "versions": [version],
        }
    })
}

fn col(name: &str, path: &str, ty: &str) -> Value {
    json!({"name": name, "jsonPath": path, "type": ty})
}

/// kbgp's CRDs; with `calico`, also the `projectcalico.org/v3` kinds it reads.
pub fn crds(calico: bool) -> Vec<Value> {
    let mut out = Vec::new();
    let age = col("Age", ".metadata.creationTimestamp", "date");
    for (group, version, calico_group) in [
        ("kbgp.io", "v1alpha1", false),
        ("projectcalico.org", "v3", true),
    ] {
        if calico_group && !calico {
            continue;
        }
        let (cfg, peer, filter) = if calico_group {
            (
                without(
                    schema_of::<BgpConfigurationSpec>(),
                    BgpConfigurationSpec::KBGP_ONLY,
                    &[],
                ),
                without(schema_of::<BgpPeerSpec>(), BgpPeerSpec::KBGP_ONLY, &[]),
                without(
                    schema_of::<BgpFilterSpec>(),
                    &[],
                    &["exportV4", "importV4", "exportV6", "importV6"],
                ),
            )
        } else {
            (
                schema_of::<BgpConfigurationSpec>(),
                schema_of::<BgpPeerSpec>(),
                schema_of::<BgpFilterSpec>(),
            )
        };
        out.push(crd(Def {
            group,
            version,
            kind: "BGPConfiguration",
            plural: "bgpconfigurations",
            singular: "bgpconfiguration",
            namespaced: false,
            spec: cfg,
            status: None,
            columns: json!([
                col("AS", ".spec.asNumber", "integer"),
                col("Mesh", ".spec.nodeToNodeMeshEnabled", "boolean"),
                age.clone()
            ]),
        }));
        out.push(crd(Def {
            group,
            version,
            kind: "BGPPeer",
            plural: "bgppeers",
            singular: "bgppeer",
            namespaced: false,
            spec: peer,
            status: None,
            columns: json!([
                col("Peer", ".spec.peerIP", "string"),
                col("AS", ".spec.asNumber", "integer"),
                col("Node", ".spec.node", "string"),
                age.clone()
            ]),
        }));
        out.push(crd(Def {
            group,
            version,
            kind: "BGPFilter",
            plural: "bgpfilters",
            singular: "bgpfilter",
            namespaced: false,
            spec: filter,
            status: None,
            columns: json!([age.clone()]),
        }));
        if calico_group {
            // Calico's Node: only spec.bgp is read; the rest is kept as is.
            let mut spec = json!({
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": true,
                "properties": {"bgp": schema_of::<NodeBgp>()},
            });
            clean(&mut spec);
            out.push(crd(Def {
                group,
                version,
                kind: "Node",
                plural: "nodes",
                singular: "node",
                namespaced: false,
                spec,
                status: Some(
                    json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
                ),
                columns: json!([
                    col("Cluster ID", ".spec.bgp.routeReflectorClusterID", "string"),
                    age.clone()
                ]),
            }));
        } else {
            out.push(crd(Def {
                group,
                version,
                kind: "BGPAllowList",
                plural: "bgpallowlists",
                singular: "bgpallowlist",
                namespaced: true,
                spec: schema_of::<BgpAllowListSpec>(),
                status: None,
                columns: json!([age.clone()]),
            }));
            out.push(crd(Def {
                group,
                version,
                kind: "BGPNodeStatus",
                plural: "bgpnodestatuses",
                singular: "bgpnodestatus",
                namespaced: false,
                spec: schema_of::<BgpNodeStatusSpec>(),
                status: Some(schema_of::<BgpNodeStatusStatus>()),
                columns: json!([
                    col("AS", ".status.asNumber", "integer"),
                    col("Router ID", ".status.routerID", "string"),
                    col("Updated", ".status.lastUpdated", "string"),
                ]),
            }));
        }
    }
    out
}

/// The CRDs as a YAML stream, optionally of one API group only.
pub fn to_yaml(calico: bool, group: Option<&str>) -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for c in crds(calico) {
        if group.is_some_and(|g| c["spec"]["group"] != g) {
            continue;
        }
        out += "---\n";
        out += &serde_yaml::to_string(&c)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kubernetes' structural schema rules that matter here: every node has a
    /// type (or is int-or-string / preserve-unknown-fields), no `$ref`, no
    /// `additionalProperties` beside `properties`.
    fn check_structural(v: &Value, path: &str) {
        let m = v
            .as_object()
            .unwrap_or_else(|| panic!("{path}: not an object"));
        assert!(!m.contains_key("$ref"), "{path}: $ref");
        assert!(!m.contains_key("default"), "{path}: default");
        if !m.contains_key("x-kubernetes-int-or-string")
            && !m.contains_key("x-kubernetes-preserve-unknown-fields")
        {
            assert!(m.contains_key("type"), "{path}: no type in {v}");
        }
        if m.contains_key("properties") {
            assert!(
                !m.contains_key("additionalProperties"),
                "{path}: additionalProperties beside properties"
            );
        }
        if let Some(p) = m.get("properties").and_then(|p| p.as_object()) {
            for (k, s) in p {
                check_structural(s, &format!("{path}.{k}"));
            }
        }
        if let Some(i) = m.get("items") {
            check_structural(i, &format!("{path}[]"));
        }
    }

    #[test]
    fn crds_are_structural_and_complete() {
        let all = crds(true);
        let names: Vec<&str> = all
            .iter()
            .map(|c| c["metadata"]["name"].as_str().unwrap())
            .collect();
        for want in [
            "bgpconfigurations.kbgp.io",
            "bgppeers.kbgp.io",
            "bgpfilters.kbgp.io",
            "bgpallowlists.kbgp.io",
            "bgpnodestatuses.kbgp.io",
            "bgpconfigurations.projectcalico.org",
            "bgppeers.projectcalico.org",
            "bgpfilters.projectcalico.org",
            "nodes.projectcalico.org",
        ] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
        assert_eq!(crds(false).len(), 5);
        for c in &all {
            let s = &c["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
            check_structural(s, c["metadata"]["name"].as_str().unwrap());
        }
    }

    /// deploy/kubernetes holds the CRDs as `kbgp crd` prints them; regenerate
    /// with `kbgp crd --group kbgp.io > deploy/kubernetes/crds.yaml` and
    /// `kbgp crd --group projectcalico.org > deploy/kubernetes/calico-crds.yaml`.
    #[test]
    fn deploy_crds_are_current() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/kubernetes");
        for (file, group) in [
            ("crds.yaml", "kbgp.io"),
            ("calico-crds.yaml", "projectcalico.org"),
        ] {
            let want = to_yaml(true, Some(group)).unwrap();
            let have = std::fs::read_to_string(dir.join(file)).unwrap();
            assert!(
                have == want,
                "deploy/kubernetes/{file} is stale: regenerate it with `kbgp crd --group {group}`"
            );
        }
    }

    #[test]
    fn calico_schemas_leave_out_kbgp_fields() {
        let all = crds(true);
        let find = |n: &str| {
            all.iter()
                .find(|c| c["metadata"]["name"] == n)
                .unwrap()
                .pointer("/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties")
                .unwrap()
                .clone()
        };
        let calico = find("bgppeers.projectcalico.org");
        let ours = find("bgppeers.kbgp.io");
        assert!(calico.get("peerIP").is_some() && calico.get("asNumber").is_some());
        assert!(calico.get("remoteAs").is_none() && calico.get("podSelector").is_none());
        assert!(ours.get("remoteAs").is_some() && ours.get("podSelector").is_some());
        assert_eq!(ours["remoteAs"]["x-kubernetes-int-or-string"], true);
        let cfg = find("bgpconfigurations.projectcalico.org");
        assert!(cfg.get("serviceClusterIPs").is_some());
        assert!(cfg.get("loadBalancerClass").is_none());
        let f = find("bgpfilters.projectcalico.org");
        let rule = &f["exportV4"]["items"]["properties"];
        assert!(rule.get("cidr").is_some() && rule.get("setLocalPref").is_none());
    }
}
