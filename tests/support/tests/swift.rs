//! The test support's Swift behind Keystone answers as OpenStack does:
//! password and application-credential tokens with the object-store
//! endpoint in their catalog, objects written and read back with them,
//! and 401 for a wrong password.
#![allow(clippy::unwrap_used, reason = "test helpers fail the test on error")]

use std::time::{Duration, Instant};

use druid_test_support::SwiftServer;
use serde_json::{Value, json};

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .build()
        .new_agent()
}

/// `POST /v3/auth/tokens` with `auth`: the status, the token and the body.
fn authenticate(server: &SwiftServer, auth: &Value) -> (u16, Option<String>, Value) {
    let mut response = agent()
        .post(&format!("{}/auth/tokens", server.auth_url()))
        .header("content-type", "application/json")
        .send(auth.to_string())
        .unwrap();
    let status = response.status().as_u16();
    let token = response
        .headers()
        .get("x-subject-token")
        .map(|v| v.to_str().unwrap().to_string());
    let body = response.body_mut().read_to_string().unwrap();
    (
        status,
        token,
        serde_json::from_str(&body).unwrap_or(Value::Null),
    )
}

fn password_auth(server: &SwiftServer, password: &str) -> Value {
    json!({ "auth": {
        "identity": {
            "methods": ["password"],
            "password": { "user": {
                "name": server.username(),
                "domain": { "name": server.domain() },
                "password": password,
            } },
        },
        "scope": { "project": {
            "name": server.project(),
            "domain": { "name": server.domain() },
        } },
    } })
}

/// The public object-store endpoint of `region` in a token's catalog.
fn object_store_url(token: &Value, region: &str) -> Option<String> {
    token["token"]["catalog"]
        .as_array()?
        .iter()
        .filter(|service| service["type"] == "object-store")
        .flat_map(|service| service["endpoints"].as_array().cloned().unwrap_or_default())
        .find(|e| e["interface"] == "public" && e["region_id"] == region)
        .and_then(|e| e["url"].as_str().map(str::to_string))
}

#[test]
fn swift_behind_keystone_takes_password_and_application_credential_tokens() {
    let started = Instant::now();
    let server = SwiftServer::start().unwrap();
    eprintln!("Swift and Keystone started in {:?}", started.elapsed());
    assert!(server.auth_url().ends_with("/v3"), "{}", server.auth_url());
    assert_eq!(server.region(), "RegionOne");
    assert_eq!(
        server.storage_url(),
        format!("{}/v1/AUTH_{}", server.proxy_url(), server.project_id())
    );

    // A password token scoped to project etcd, with Swift in its catalog.
    let (status, token, body) = authenticate(&server, &password_auth(&server, server.password()));
    assert_eq!(status, 201, "{body}");
    let password_token = token.expect("X-Subject-Token");
    assert_eq!(body["token"]["project"]["name"], "etcd", "{body}");
    assert_eq!(
        object_store_url(&body, server.region()).as_deref(),
        Some(server.storage_url()),
        "{body}"
    );

    // The admin sees the user through Keystone's API.
    let mut users = agent()
        .get(&format!(
            "{}/users?name={}",
            server.auth_url(),
            server.username()
        ))
        .header("x-auth-token", &server.admin_token().unwrap())
        .call()
        .unwrap();
    assert_eq!(users.status().as_u16(), 200);
    let users: Value = serde_json::from_str(&users.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(users["users"][0]["id"], server.user_id(), "{users}");

    // A wrong password is refused.
    let (status, token, body) = authenticate(&server, &password_auth(&server, "wrong"));
    assert_eq!(status, 401, "{body}");
    assert!(token.is_none());

    // An application credential authenticates alone (no user name, no
    // scope: the credential's project).
    let (id, secret) = server
        .create_application_credential("etcd-backup-test")
        .unwrap();
    let (status, token, body) = authenticate(
        &server,
        &json!({ "auth": { "identity": {
            "methods": ["application_credential"],
            "application_credential": { "id": id, "secret": secret },
        } } }),
    );
    assert_eq!(status, 201, "{body}");
    let credential_token = token.expect("X-Subject-Token");
    assert_eq!(
        body["token"]["project"]["id"],
        server.project_id(),
        "{body}"
    );
    assert_eq!(
        object_store_url(&body, server.region()).as_deref(),
        Some(server.storage_url()),
        "{body}"
    );
    // Its secret is checked.
    let (status, _, body) = authenticate(
        &server,
        &json!({ "auth": { "identity": {
            "methods": ["application_credential"],
            "application_credential": { "id": id, "secret": "wrong" },
        } } }),
    );
    assert_eq!(status, 401, "{body}");
    // A name is unique per user.
    assert!(
        server
            .create_application_credential("etcd-backup-test")
            .is_err()
    );

    // Write with the application credential's token, read with the
    // password's and with token().
    server.create_container("backups").unwrap();
    server.create_container("backups").unwrap();
    let object = format!("{}/backups/full/snapshot-1", server.storage_url());
    let put = agent()
        .put(&object)
        .header("x-auth-token", &credential_token)
        .send("etcd snapshot bytes")
        .unwrap();
    assert_eq!(put.status().as_u16(), 201);
    for token in [password_token.clone(), server.token().unwrap()] {
        let mut get = agent()
            .get(&object)
            .header("x-auth-token", &token)
            .call()
            .unwrap();
        assert_eq!(get.status().as_u16(), 200);
        assert_eq!(
            get.body_mut().read_to_string().unwrap(),
            "etcd snapshot bytes"
        );
    }

    // Without a valid token, Swift refuses.
    for token in [None, Some("not-a-token")] {
        let mut request = agent().get(&object);
        if let Some(token) = token {
            request = request.header("x-auth-token", token);
        }
        let status = request.call().unwrap().status().as_u16();
        assert_eq!(status, 401, "token {token:?}");
    }

    // Large objects: a dynamic (X-Object-Manifest) and a static
    // (multipart-manifest) manifest of two segments.
    let put = |path: &str, query: &str, headers: &[(&str, &str)], body: &str| {
        let mut request = agent()
            .put(&format!("{}/backups/{path}{query}", server.storage_url()))
            .header("x-auth-token", &password_token);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let status = request.send(body).unwrap().status().as_u16();
        assert_eq!(status, 201, "PUT {path}{query}");
    };
    let get = |path: &str| {
        let mut response = agent()
            .get(&format!("{}/backups/{path}", server.storage_url()))
            .header("x-auth-token", &password_token)
            .call()
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "GET {path}");
        response.body_mut().read_to_string().unwrap()
    };
    put("segments/1", "", &[], "etcd ");
    put("segments/2", "", &[], "snapshot");
    put("dlo", "", &[("x-object-manifest", "backups/segments/")], "");
    assert_eq!(get("dlo"), "etcd snapshot");
    let manifest = json!([
        { "path": "/backups/segments/1" },
        { "path": "/backups/segments/2" },
    ]);
    put("slo", "?multipart-manifest=put", &[], &manifest.to_string());
    assert_eq!(get("slo"), "etcd snapshot");

    // Bulk delete.
    let mut deleted = agent()
        .post(&format!("{}?bulk-delete", server.storage_url()))
        .header("x-auth-token", &password_token)
        .header("accept", "application/json")
        .header("content-type", "text/plain")
        .send("backups/full/snapshot-1\nbackups/dlo\n")
        .unwrap();
    assert_eq!(deleted.status().as_u16(), 200);
    let report: Value =
        serde_json::from_str(&deleted.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(report["Number Deleted"], 2, "{report}");
    let status = agent()
        .get(&object)
        .header("x-auth-token", &password_token)
        .call()
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(status, 404);

    // /info lists the bulk and SLO middlewares (DLO and keystoneauth do
    // not register there).
    let mut info = agent()
        .get(&format!("{}/info", server.proxy_url()))
        .call()
        .unwrap();
    let info: Value = serde_json::from_str(&info.body_mut().read_to_string().unwrap()).unwrap();
    for middleware in ["bulk_delete", "slo"] {
        assert!(info.get(middleware).is_some(), "no {middleware} in {info}");
    }

    // Concurrent clients, each with its own token (Keystone's SQLite and
    // threaded server, Swift's single proxy process).
    let concurrent = Instant::now();
    std::thread::scope(|scope| {
        for i in 0..8 {
            let server = &server;
            scope.spawn(move || {
                let token = server.token().unwrap();
                let url = format!("{}/backups/parallel/{i}", server.storage_url());
                let body = format!("part {i}");
                let put = agent()
                    .put(&url)
                    .header("x-auth-token", &token)
                    .send(&body)
                    .unwrap();
                assert_eq!(put.status().as_u16(), 201);
                let mut get = agent()
                    .get(&url)
                    .header("x-auth-token", &token)
                    .call()
                    .unwrap();
                assert_eq!(get.status().as_u16(), 200);
                assert_eq!(get.body_mut().read_to_string().unwrap(), body);
            });
        }
    });
    eprintln!("8 concurrent clients took {:?}", concurrent.elapsed());
    eprintln!("test done after {:?}", started.elapsed());
}
