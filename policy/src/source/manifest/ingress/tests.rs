//! Ingresses in manifests: their Service backends read, unknown fields
//! ignored, bad backends an error naming the file, the object and the
//! field.

use super::super::{ManifestError, load_dir};
use crate::model::addressing::AddressPlan;
use crate::model::{IngressBackend, IngressPort};
use crate::testfs::dir_with;

fn ingress(spec: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: web\n  \
         namespace: shop\nspec:\n{spec}"
    )
}

/// The one error of loading `text`, which names the file, the Ingress
/// and `field`.
fn error(text: &str, field: &str) -> String {
    let dir = dir_with(&[("ing.yaml", text)]);
    let errors = load_dir(dir.path(), &AddressPlan::default()).unwrap_err();
    let message = errors.to_string();
    assert_eq!(errors.0.len(), 1, "{message}");
    let ManifestError::Object(e) = &errors.0[0] else {
        panic!("not an object error: {message}");
    };
    assert_eq!(e.origin.path().unwrap(), dir.path().join("ing.yaml"));
    assert_eq!(e.object.to_string(), "Ingress shop/web", "{message}");
    assert_eq!(e.field, field, "{message}");
    assert!(message.contains(&dir.path().join("ing.yaml").display().to_string()));
    message
}

#[test]
fn backends_of_the_default_and_every_path_are_read_sorted_and_once() {
    let text = ingress(
        "  ingressClassName: nginx\n  someFutureField: {x: 1}\n  defaultBackend:\n    service:\n      \
         name: web\n      port: {name: http}\n  tls:\n    - hosts: [shop.example]\n  rules:\n    \
         - host: shop.example\n      http:\n        paths:\n          - path: /\n            \
         pathType: Prefix\n            backend:\n              service:\n                name: \
         api\n                port: {number: 8080}\n          - path: /web\n            \
         pathType: Prefix\n            backend:\n              service: {name: web, port: {name: \
         http}}\n          - path: /static\n            pathType: Prefix\n            \
         backend:\n              resource: {apiGroup: k8s.example.com, kind: Bucket, name: \
         static}\n    - host: other.example\n",
    );
    let dir = dir_with(&[("ing.yaml", &text)]);
    let model = load_dir(dir.path(), &AddressPlan::default()).unwrap();
    assert_eq!(model.ingresses.len(), 1);
    let ing = &model.ingresses[0];
    assert_eq!(ing.key(), "shop/web");
    assert_eq!(
        ing.backends,
        [
            IngressBackend {
                service: "api".into(),
                port: IngressPort::Number(8080),
            },
            IngressBackend {
                service: "web".into(),
                port: IngressPort::Name("http".into()),
            },
        ]
    );
}

#[test]
fn a_bad_backend_names_its_field() {
    let m = error(
        &ingress("  defaultBackend:\n    service: {name: web, port: {number: 70000}}\n"),
        "spec.defaultBackend.service.port.number",
    );
    assert!(m.contains("70000"), "{m}");
    error(
        &ingress("  defaultBackend:\n    service: {name: web, port: {number: 0}}\n"),
        "spec.defaultBackend.service.port.number",
    );
    error(
        &ingress("  defaultBackend:\n    service: {name: web, port: {number: 80, name: http}}\n"),
        "spec.defaultBackend.service.port",
    );
    error(
        &ingress("  defaultBackend:\n    service: {name: web}\n"),
        "spec.defaultBackend.service.port",
    );
    error(
        &ingress("  defaultBackend:\n    service: {name: web, port: {name: Not_A_Name}}\n"),
        "spec.defaultBackend.service.port.name",
    );
    error(
        &ingress("  defaultBackend:\n    service: {name: \"\", port: {number: 80}}\n"),
        "spec.defaultBackend.service.name",
    );
    error(&ingress("  defaultBackend: {}\n"), "spec.defaultBackend");
    error(
        &ingress(
            "  defaultBackend:\n    service: {name: web, port: {number: 80}}\n    \
             resource: {kind: Bucket, name: b}\n",
        ),
        "spec.defaultBackend",
    );
    error(
        &ingress(
            "  rules:\n    - http:\n        paths:\n          - path: /\n            \
             pathType: Prefix\n            backend:\n              service: {name: web, port: \
             {number: -1}}\n",
        ),
        "spec.rules[0].http.paths[0].backend.service.port.number",
    );
    let m = error(
        &ingress("  rules:\n    - http:\n        paths: 3\n"),
        "spec.rules[0].http.paths",
    );
    assert!(m.contains("invalid type"), "{m}");
    let old = ingress("  defaultBackend:\n    service: {name: web, port: {number: 80}}\n")
        .replace("networking.k8s.io/v1", "networking.k8s.io/v1beta1");
    let m = error(&old, "apiVersion");
    assert!(m.contains("networking.k8s.io/v1beta1"), "{m}");
}

#[test]
fn two_ingresses_of_one_name_are_an_error() {
    let one = ingress("  defaultBackend:\n    service: {name: web, port: {number: 80}}\n");
    let dir = dir_with(&[("a.yaml", &one), ("b.yaml", &one)]);
    let errors = load_dir(dir.path(), &AddressPlan::default()).unwrap_err();
    assert_eq!(errors.0.len(), 1, "{errors}");
    assert!(errors.to_string().contains("metadata.name"), "{errors}");
}
