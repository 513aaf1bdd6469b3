//! Keystone's REST API as the test server uses it: requests on loopback,
//! tokens, and the project, user, role and object-store endpoint the tests
//! sign in with.

use serde_json::{Value, json};

use super::{ADMIN, DOMAIN, DOMAIN_ID, PROJECT, REGION, REQUEST_TIMEOUT, USERNAME};
use crate::{Error, Result};

pub(super) fn api_error(context: impl Into<String>) -> impl FnOnce(String) -> Error {
    let context = context.into();
    move |reason| Error::io(context)(std::io::Error::other(reason))
}

/// An HTTP answer.
pub(super) struct Reply {
    pub(super) status: u16,
    /// Keystone's `X-Subject-Token` header (the token it issued).
    pub(super) subject_token: Option<String>,
    pub(super) body: String,
    /// The body as JSON (`Null` when it is not).
    pub(super) json: Value,
}

/// One HTTP request on loopback; any status is an answer.
pub(super) fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> std::result::Result<Reply, String> {
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(REQUEST_TIMEOUT))
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut builder = ureq::http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let what = |e: &dyn std::fmt::Display| format!("{method} {url}: {e}");
    let response = match body {
        Some(bytes) => agent.run(builder.body(bytes).map_err(|e| what(&e))?),
        None => agent.run(builder.body(()).map_err(|e| what(&e))?),
    };
    let mut response = response.map_err(|e| what(&e))?;
    let status = response.status().as_u16();
    let subject_token = response
        .headers()
        .get("x-subject-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = if method == "HEAD" {
        String::new()
    } else {
        response.body_mut().read_to_string().map_err(|e| what(&e))?
    };
    let json = serde_json::from_str(&body).unwrap_or(Value::Null);
    Ok(Reply {
        status,
        subject_token,
        body,
        json,
    })
}

/// A JSON request to Keystone, with `token` in `X-Auth-Token`.
pub(super) fn keystone(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> std::result::Result<Reply, String> {
    let mut headers = vec![("accept", "application/json")];
    if let Some(token) = token {
        headers.push(("x-auth-token", token));
    }
    let bytes = match body {
        Some(body) => {
            headers.push(("content-type", "application/json"));
            Some(body.to_string().into_bytes())
        }
        // An empty body, with its length, on PUT and POST.
        None if !matches!(method, "GET" | "HEAD" | "DELETE") => Some(Vec::new()),
        None => None,
    };
    request(method, url, &headers, bytes)
}

/// The body of a password authentication of `user` in the default domain
/// scoped to `project` there.
pub(super) fn password_auth(user: &str, password: &str, project: &str) -> Value {
    json!({ "auth": {
        "identity": {
            "methods": ["password"],
            "password": { "user": {
                "name": user,
                "domain": { "name": DOMAIN },
                "password": password,
            } },
        },
        "scope": { "project": { "name": project, "domain": { "name": DOMAIN } } },
    } })
}

/// A token of `user` scoped to `project` (both in the default domain).
pub(super) fn issue_token(
    auth_url: &str,
    user: &str,
    password: &str,
    project: &str,
) -> Result<String> {
    let context = format!("getting a token for {user} in project {project}");
    let reply = keystone(
        "POST",
        &format!("{auth_url}/auth/tokens"),
        None,
        Some(&password_auth(user, password, project)),
    )
    .map_err(api_error(context.clone()))?;
    match (reply.status, reply.subject_token) {
        (201, Some(token)) => Ok(token),
        (status, _) => Err(api_error(context)(format!("HTTP {status}: {}", reply.body))),
    }
}

/// `method` on `url` must answer `want`; returns the JSON body.
pub(super) fn expect(
    method: &str,
    url: &str,
    token: &str,
    body: Option<&Value>,
    want: u16,
) -> std::result::Result<Value, String> {
    let reply = keystone(method, url, Some(token), body)?;
    if reply.status == want {
        Ok(reply.json)
    } else {
        Err(format!(
            "{method} {url}: HTTP {} (want {want}): {}",
            reply.status, reply.body
        ))
    }
}

/// `value[key]["id"]` as a string.
pub(super) fn id_of(value: &Value, key: &str) -> std::result::Result<String, String> {
    value[key]["id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("no {key} id in {value}"))
}

/// Through Keystone's API as the bootstrap admin: the `object-store`
/// service and its public endpoint, project `etcd`, user `etcd-backup`
/// with role `member` on it. Returns the project's and the user's ids.
pub(super) fn configure_keystone(
    auth_url: &str,
    admin_password: &str,
    password: &str,
    proxy_url: &str,
) -> std::result::Result<(String, String), String> {
    let admin = issue_token(auth_url, ADMIN, admin_password, ADMIN).map_err(|e| e.to_string())?;
    let service = expect(
        "POST",
        &format!("{auth_url}/services"),
        &admin,
        Some(&json!({ "service": {
            "name": "swift",
            "type": "object-store",
            "description": "OpenStack Object Storage",
        } })),
        201,
    )?;
    expect(
        "POST",
        &format!("{auth_url}/endpoints"),
        &admin,
        Some(&json!({ "endpoint": {
            "service_id": id_of(&service, "service")?,
            "interface": "public",
            "region_id": REGION,
            "url": format!("{proxy_url}/v1/AUTH_$(project_id)s"),
        } })),
        201,
    )?;
    let project = expect(
        "POST",
        &format!("{auth_url}/projects"),
        &admin,
        Some(&json!({ "project": {
            "name": PROJECT,
            "domain_id": DOMAIN_ID,
            "description": "etcd backups",
        } })),
        201,
    )?;
    let project_id = id_of(&project, "project")?;
    let user = expect(
        "POST",
        &format!("{auth_url}/users"),
        &admin,
        Some(&json!({ "user": {
            "name": USERNAME,
            "domain_id": DOMAIN_ID,
            "password": password,
            "default_project_id": project_id,
        } })),
        201,
    )?;
    let user_id = id_of(&user, "user")?;
    // Bootstrap creates admin, member and reader.
    let roles = expect(
        "GET",
        &format!("{auth_url}/roles?name=member"),
        &admin,
        None,
        200,
    )?;
    let role_id = match roles["roles"][0]["id"].as_str() {
        Some(id) => id.to_string(),
        None => id_of(
            &expect(
                "POST",
                &format!("{auth_url}/roles"),
                &admin,
                Some(&json!({ "role": { "name": "member" } })),
                201,
            )?,
            "role",
        )?,
    };
    expect(
        "PUT",
        &format!("{auth_url}/projects/{project_id}/users/{user_id}/roles/{role_id}"),
        &admin,
        None,
        204,
    )?;
    Ok((project_id, user_id))
}
