//! [`ROUTES`](crate::paths::ROUTES), which `--help` and the 404 print, is what the router serves
//! and what `/openapi.json` documents.

use super::*;
use crate::paths::{ROUTES, routes_line};
use utoipa::OpenApi as _;

#[tokio::test]
async fn every_listed_route_is_served() {
    let c = client(Answer::Accept, |_| {});
    for (method, path) in ROUTES {
        let method: Method = method.parse().unwrap();
        let r = c.call(method.clone(), path, &[], Body::empty()).await;
        assert!(
            ![StatusCode::NOT_FOUND, StatusCode::METHOD_NOT_ALLOWED].contains(&r.status),
            "{method} {path}: {}",
            r.status
        );
    }
    let unknown = c.call(Method::GET, "/nope", &[], Body::empty()).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert!(
        unknown.error().contains(&routes_line()),
        "{}",
        unknown.error()
    );
}

#[test]
fn every_documented_route_is_listed() {
    let doc = crate::openapi::ApiDoc::openapi();
    for (path, item) in &doc.paths.paths {
        let methods = [("GET", item.get.is_some()), ("POST", item.post.is_some())];
        for (method, _) in methods.iter().filter(|(_, documented)| *documented) {
            assert!(
                ROUTES.contains(&(*method, path.as_str())),
                "{method} {path} is documented but not in ROUTES"
            );
        }
    }
}
