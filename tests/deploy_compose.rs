//! `deploy/compose.yaml`, checked structurally. `docker compose config`
//! would be the real check, but it needs the compose plugin, which this
//! machine and CI lack (`docker: unknown command: docker compose`; there is
//! no Docker engine either): so this test reads the file and checks what
//! `config` would refuse, and what our stack relies on.

use std::path::Path;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// What `docker compose config` would refuse, checked by hand (no compose
/// plugin here): every service has an image or a build, named volumes are
/// declared, bind-mounted files exist, `depends_on` names services, NATS
/// sits behind the `replication` profile, and flashsale gets more than the
/// server's 20 s grace to stop.
#[test]
fn the_compose_file_is_consistent() {
    let text = std::fs::read_to_string(repo().join("deploy/compose.yaml")).unwrap();
    let compose: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let services = compose["services"].as_mapping().expect("services");
    let volumes = compose["volumes"].as_mapping().expect("volumes");
    for wanted in ["flashsale", "postgres", "prometheus", "grafana", "nats"] {
        assert!(services.contains_key(wanted), "service {wanted} missing");
    }
    for (name, service) in services {
        let name = name.as_str().unwrap();
        let image = service["image"].as_str();
        assert!(
            image.is_some() || !service["build"].is_null(),
            "{name}: no image, no build"
        );
        if let Some(image) = image.filter(|_| service["build"].is_null()) {
            let (_, tag) = image.rsplit_once(':').expect("image with a tag");
            assert!(
                tag.chars().any(|c| c.is_ascii_digit()),
                "{name}: unpinned {image}"
            );
        }
        for mount in service["volumes"].as_sequence().into_iter().flatten() {
            let source = mount.as_str().unwrap().split(':').next().unwrap();
            if source.starts_with('.') {
                let path = repo().join("deploy").join(source);
                assert!(path.exists(), "{name}: {} missing", path.display());
            } else {
                assert!(
                    volumes.contains_key(source),
                    "{name}: volume {source} not declared"
                );
            }
        }
        let depends = &service["depends_on"];
        let needed: Vec<&str> = match depends.as_sequence() {
            Some(list) => list.iter().filter_map(|v| v.as_str()).collect(),
            None => depends
                .as_mapping()
                .into_iter()
                .flatten()
                .filter_map(|(k, _)| k.as_str())
                .collect(),
        };
        for other in needed {
            assert!(
                services.contains_key(other),
                "{name} depends on unknown {other}"
            );
        }
    }
    assert_eq!(services["nats"]["profiles"][0], "replication");
    assert_eq!(services["flashsale"]["stop_grace_period"], "30s");
}
