//! Each real server the test-support crate starts answers real requests.
#![allow(clippy::unwrap_used, reason = "test helpers fail the test on error")]

use std::time::Duration;

use druid_test_support::{EtcdCluster, EtcdMemberConfig, KubeApiServer, MinioServer};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

#[tokio::test]
async fn etcd_put_then_get() {
    let etcd = EtcdCluster::shared();
    let mut client = etcd_client::Client::connect(etcd.client_urls(), None)
        .await
        .unwrap();
    client.put("/druid/e2e/key", "value-1", None).await.unwrap();
    let response = client.get("/druid/e2e/key", None).await.unwrap();
    let kv = &response.kvs()[0];
    assert_eq!(kv.value(), b"value-1");
    assert!(kv.mod_revision() > 1);
}

#[tokio::test]
async fn a_three_member_etcd_cluster_replicates() {
    let cluster = EtcdCluster::start(3).unwrap();
    assert_eq!(cluster.members().len(), 3);
    let urls = cluster.client_urls();

    let mut first = etcd_client::Client::connect([urls[0].clone()], None)
        .await
        .unwrap();
    let members = first.member_list().await.unwrap();
    assert_eq!(members.members().len(), 3);
    first.put("replicated", "yes", None).await.unwrap();

    // A linearizable read through another member sees the write.
    let mut third = etcd_client::Client::connect([urls[2].clone()], None)
        .await
        .unwrap();
    let response = third.get("replicated", None).await.unwrap();
    assert_eq!(response.kvs()[0].value(), b"yes");
}

#[tokio::test]
async fn etcd_member_killed_is_seen_as_exited() {
    let cluster = EtcdCluster::start(1).unwrap();
    let member = &cluster.members()[0];
    assert!(member.process().exited().is_none());
    member.process().kill();
    assert!(member.process().exited().is_some());
    // Its data directory stays for a restore test to inspect.
    assert!(member.data_dir().join("member").is_dir());
}

#[tokio::test]
async fn an_etcd_member_restarts_on_its_data_directory() {
    let mut member = EtcdMemberConfig::new("restart").unwrap().start().unwrap();
    let mut client = etcd_client::Client::connect([member.client_url()], None)
        .await
        .unwrap();
    client.put("kept", "across restarts", None).await.unwrap();
    drop(client);
    member.stop();
    assert!(member.process().exited().is_some());

    member.restart().unwrap();
    assert!(member.process().exited().is_none());
    let mut client = etcd_client::Client::connect([member.client_url()], None)
        .await
        .unwrap();
    let response = client.get("kept", None).await.unwrap();
    assert_eq!(response.kvs()[0].value(), b"across restarts");
}

async fn kube_client(server: &KubeApiServer) -> kube::Client {
    let kubeconfig = Kubeconfig::read_from(server.kubeconfig()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

#[tokio::test]
async fn kube_apiserver_creates_and_reads_back_a_namespace() {
    let server = KubeApiServer::shared();
    let client = kube_client(server).await;

    let version = client.apiserver_version().await.unwrap();
    assert!(
        version.git_version.starts_with("v1."),
        "{}",
        version.git_version
    );

    let namespaces: Api<Namespace> = Api::all(client);
    let name = format!("e2e-{}", std::process::id());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            labels: Some([("purpose".to_string(), "e2e".to_string())].into()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();

    let read = namespaces.get(&name).await.unwrap();
    assert_eq!(read.metadata.name.as_deref(), Some(name.as_str()));
    assert_eq!(
        read.metadata.labels.unwrap_or_default().get("purpose"),
        Some(&"e2e".to_string())
    );
    assert!(read.metadata.uid.is_some());
}

#[tokio::test]
async fn kube_apiserver_refuses_a_client_without_credentials() {
    let server = KubeApiServer::shared();
    let mut kubeconfig = Kubeconfig::read_from(server.kubeconfig()).unwrap();
    for user in &mut kubeconfig.auth_infos {
        if let Some(auth) = user.auth_info.as_mut() {
            auth.token = None;
        }
    }
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let namespaces: Api<Namespace> = Api::all(client);
    let err = namespaces.list(&Default::default()).await.unwrap_err();
    match err {
        kube::Error::Api(status) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("expected 403 Forbidden, got {other:?}"),
    }
}

struct S3 {
    bucket: rusty_s3::Bucket,
    credentials: rusty_s3::Credentials,
    http: reqwest::Client,
}

const SIGN_FOR: Duration = Duration::from_secs(300);

impl S3 {
    fn new(minio: &MinioServer, bucket: &str, secret: &str) -> Self {
        let bucket = rusty_s3::Bucket::new(
            minio.endpoint().parse().unwrap(),
            rusty_s3::UrlStyle::Path,
            bucket.to_string(),
            minio.region().to_string(),
        )
        .unwrap();
        let credentials = rusty_s3::Credentials::new(minio.access_key(), secret);
        Self {
            bucket,
            credentials,
            http: reqwest::Client::new(),
        }
    }
}

#[tokio::test]
async fn minio_object_round_trip() {
    use rusty_s3::S3Action;
    let minio = MinioServer::shared();
    let s3 = S3::new(minio, "druid-e2e", minio.secret_key());

    let create = s3.bucket.create_bucket(&s3.credentials).sign(SIGN_FOR);
    let response = s3.http.put(create).send().await.unwrap();
    assert!(response.status().is_success(), "{response:?}");

    let body: Vec<u8> = (0..=255u8).cycle().take(1 << 20).collect();
    let put = s3
        .bucket
        .put_object(
            Some(&s3.credentials),
            "v2/Full-00000000-00000010-1700000000",
        )
        .sign(SIGN_FOR);
    let response = s3.http.put(put).body(body.clone()).send().await.unwrap();
    assert!(response.status().is_success(), "{response:?}");

    let get = s3
        .bucket
        .get_object(
            Some(&s3.credentials),
            "v2/Full-00000000-00000010-1700000000",
        )
        .sign(SIGN_FOR);
    let response = s3.http.get(get).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.unwrap().as_ref(), body.as_slice());

    let mut list = s3.bucket.list_objects_v2(Some(&s3.credentials));
    list.with_prefix("v2/");
    let response = s3.http.get(list.sign(SIGN_FOR)).send().await.unwrap();
    let text = response.text().await.unwrap();
    let parsed = rusty_s3::actions::ListObjectsV2::parse_response(&text).unwrap();
    let keys: Vec<&str> = parsed.contents.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys, vec!["v2/Full-00000000-00000010-1700000000"]);
}

#[tokio::test]
async fn minio_refuses_a_wrong_secret() {
    use rusty_s3::S3Action;
    let minio = MinioServer::shared();
    let s3 = S3::new(minio, "druid-e2e-denied", "not-the-secret");
    let create = s3.bucket.create_bucket(&s3.credentials).sign(SIGN_FOR);
    let response = s3.http.put(create).send().await.unwrap();
    assert_eq!(response.status(), 403);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("SignatureDoesNotMatch")
    );
}
